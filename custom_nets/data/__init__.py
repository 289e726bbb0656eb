from .datalist import DatalistError, check_datalist, load_datalist
from .demo import DemoCase, make_case, write_demo_dataset, write_demo_volume

__all__ = ["DatalistError", "check_datalist", "load_datalist", "DemoCase", "make_case", "write_demo_dataset", "write_demo_volume"]
