"""UMAP's compiled code (ml/figures/numba_cache.py): one process compiles it for every process that
shares the folder, and the others wait for it instead of compiling the same functions side by side."""

import subprocess
import sys
import textwrap

from processes import REPO

COMPILE = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from mnist_assets.ml.figures.numba_cache import compile_once

    folder = Path(sys.argv[1])

    def compile():
        with open(folder / "compiled-by", "a") as out:
            out.write(f"{os.getpid()}\\n")
        time.sleep(2)  # the other processes arrive while this one compiles

    compile_once(folder / "marker", before=lambda: print("enabled"), compile=compile)
    print("compiled" if (folder / "marker").exists() else "not compiled")
    """
)


def test_one_process_compiles_while_the_others_wait_for_it(tmp_path):
    processes = [
        subprocess.Popen([sys.executable, "-c", COMPILE, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True) for _ in range(3)
    ]
    outputs = [process.communicate(timeout=120)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0]
    assert outputs == ["enabled\ncompiled\n"] * 3  # each went on only once the code was there
    assert len((tmp_path / "compiled-by").read_text().split()) == 1

    # a later process finds the marker and only enables the cache
    later = subprocess.run([sys.executable, "-c", COMPILE, str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert later.stdout == "enabled\ncompiled\n" and len((tmp_path / "compiled-by").read_text().split()) == 1
