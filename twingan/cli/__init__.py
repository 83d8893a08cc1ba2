"""The `twingan` command line: one module per sub-command, registered in `main.py`."""
