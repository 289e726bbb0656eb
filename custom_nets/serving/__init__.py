"""Serving a bundle to clients (MONAI Label): what a request may carry, checked before any config sees it."""

from .requests import RequestError, clean_infer_request, clean_train_request, literal_text, safe_name

__all__ = ["RequestError", "clean_infer_request", "clean_train_request", "literal_text", "safe_name"]
