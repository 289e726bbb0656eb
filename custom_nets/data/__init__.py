from .budget import training_subset, write_training_subset
from .datalist import DatalistError, check_datalist, datalist_mask_rule, load_datalist
from .dataset import CacheDataset
from .demo import DemoCase, make_case, write_demo_dataset, write_demo_volume

__all__ = ["CacheDataset", "DatalistError", "check_datalist", "datalist_mask_rule", "load_datalist", "training_subset",
           "write_training_subset", "DemoCase", "make_case", "write_demo_dataset", "write_demo_volume"]
