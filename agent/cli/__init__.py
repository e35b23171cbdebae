"""The command line: `dairy-edge --help`."""
