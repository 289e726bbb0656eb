from .datalist import DatalistError, check_datalist, load_datalist
from .dataset import CacheDataset
from .demo import DemoCase, make_case, write_demo_dataset, write_demo_volume

__all__ = ["CacheDataset", "DatalistError", "check_datalist", "load_datalist", "DemoCase", "make_case",
           "write_demo_dataset", "write_demo_volume"]
