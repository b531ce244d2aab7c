"""What every benchmark report states about the machine it ran on."""
import os
import pathlib
import platform
import shlex
import sys


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def command_line(argv: list[str], root: pathlib.Path) -> str:
    """The command as typed from the repository root, for the report header."""
    prog = pathlib.Path(sys.argv[0]).resolve()
    try:
        prog_s = str(prog.relative_to(root))
    except ValueError:
        prog_s = str(prog)
    return shlex.join([prog_s] + argv)


def build_binary(name: str, root: pathlib.Path) -> str:
    """Path of a kvc binary: $KVC_BUILD_DIR/bin/NAME (relative to the repository root), else build/bin/NAME."""
    build = os.environ.get("KVC_BUILD_DIR")
    build_dir = pathlib.Path(build) if build else root / "build"
    if not build_dir.is_absolute():
        build_dir = root / build_dir
    return str(build_dir / "bin" / name)
