import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
# Tests run from the source tree: the package directory first on the path.
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
REPO = HERE.parent.parent.parent
