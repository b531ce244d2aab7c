import pathlib
import sys

# The helpers beside the tests, and the generators under deploy/, import as plain modules.
HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
