"""Run a notebook's code the way Jupyter, nbgrader and Otter do: cell by cell, past the cells that raise.

The notebook arrives as submission.py (grader.uploads.notebook_to_module) with the line span of each
cell. Each cell is compiled on its own, with its lines where they are in submission.py, so that
tracebacks and messages point at the right cell. Used by the student side and by the in-process
reference runs that check the sandbox scores like pytest in one process would.
"""

import sys
import types


def run_cells(module: types.ModuleType, source: str, spans: list[dict]) -> list[tuple[int, BaseException]]:
    """Run each cell of source in module's namespace; return (cell number, exception) for each that raised.

    A cell that raises, or does not compile, is skipped from the point of the error on, as in Jupyter;
    the next cells still run. The module is in sys.modules while its cells run, as during an import.
    """
    lines = source.splitlines(keepends=True)
    failed: list[tuple[int, BaseException]] = []
    filename = module.__dict__.get("__file__", "submission.py")
    sys.modules[module.__name__] = module
    for span in spans:
        start, end = int(span["start_line"]), int(span["end_line"])
        # Blank lines before the cell keep its line numbers those of submission.py.
        text = "\n" * (start - 1) + "".join(lines[start - 1 : end])
        try:
            code = compile(text, filename, "exec", dont_inherit=True)
            exec(code, module.__dict__)  # noqa: S102 - the student's own code, in the student's process
        except BaseException as exc:  # noqa: BLE001 - sys.exit() in a cell only ends that cell, as in Jupyter
            failed.append((int(span["cell"]), exc))
    return failed


def load_notebook_module(path: str, spans: list[dict], name: str = "submission"):
    """A fresh module made by running the cells of the generated submission.py at path."""
    with open(path, encoding="utf-8") as file:
        source = file.read()
    module = types.ModuleType(name)
    module.__file__ = path
    return module, run_cells(module, source, spans)
