"""Shared by the notebook builders: tidy an executed notebook before it is committed."""

from collections.abc import Callable

import nbformat as nbf


def cell_makers() -> tuple[list, Callable[[str], None], Callable[[str], None]]:
    """``(cells, md, code)``: ``md(text)`` / ``code(text)`` append a markdown / code cell."""
    cells: list = []

    def md(text: str) -> None:
        cells.append(nbf.v4.new_markdown_cell(text))

    def code(text: str) -> None:
        cells.append(nbf.v4.new_code_cell(text))

    return cells, md, code


def strip_stderr(path: str) -> None:
    """Drop stderr streams: TensorFlow's C++ start-up lines go to the kernel's fd 2, which
    nbval's kernels send to /dev/null, so they must not be stored as expected output."""
    notebook = nbf.read(path, 4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if o.get("name") != "stderr"]
    nbf.write(notebook, path)


def build(cells: list, path: str, argv: list[str]) -> None:
    """A builder's command line: no argument writes the cells as a fresh notebook (then execute
    it with ``jupyter nbconvert --execute --inplace``); ``--strip`` tidies the executed one."""
    if argv == ["--strip"]:
        strip_stderr(path)
        return
    notebook = nbf.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    nbf.write(notebook, path)
