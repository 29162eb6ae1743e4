"""Data: the xarray door, the built-in catalog, and tables and fields ready for training."""
