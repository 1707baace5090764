"""The core install (torch, torchvision, NumPy, Pillow, tqdm) runs LGS, every defense and `lgs-gpu defend`;
what needs an extra says which, in one line (lgs_gpu/core/extras.py)."""

import os
import subprocess
import sys
import textwrap

import pytest

from lgs_gpu.core.extras import OPTIONAL, MissingExtra, optional_import

# A process where every optional package is missing, as after `pip install lgs-gpu` alone.
CORE_ONLY = textwrap.dedent("""
    import sys
    BLOCKED = {blocked!r}
    for name in BLOCKED:
        sys.modules[name] = None  # import fails with ModuleNotFoundError; importlib.util.find_spec gives None
""")
SCRIPT = CORE_ONLY + textwrap.dedent("""
    import contextlib, io, torch, lgs_gpu
    from torchvision.io import write_png
    from lgs_gpu import defenses
    from lgs_gpu.app.cli import main

    x = torch.rand(2, 3, 40, 44)
    assert lgs_gpu.lgs(x).shape == x.shape and lgs_gpu.lgs_map(x).shape == (2, 1, 40, 44)
    for info in defenses.available():
        assert defenses.get(info.spec_for(info.paper_grid[0]))(x).shape == x.shape, info.name
    write_png((x[0] * 255).to(torch.uint8), sys.argv[1] + "/a.png")
    assert main(["defend", sys.argv[1] + "/a.png", "-o", sys.argv[1] + "/out"]) == 0
    for command in (["demo", "-o", sys.argv[1] + "/demo"], ["evaluate", "--quick", "-o", sys.argv[1] + "/evaluation"]):
        errors = io.StringIO()
        with contextlib.redirect_stderr(errors):
            assert main(command) == 2, command
        assert "pip install 'lgs-gpu[eval]'" in errors.getvalue() and len(errors.getvalue().splitlines()) == 1
    leaked = sorted(name for name, module in sys.modules.items() if module is not None and name.split(".")[0] in BLOCKED)
    assert not leaked, leaked
    print("core ok")
""")


def test_the_core_alone_runs_lgs_every_defense_and_defend(tmp_path):
    blocked = sorted(OPTIONAL)
    environment = {**{k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}, "LGS_GPU_CACHE_DIR": "off"}
    result = subprocess.run([sys.executable, "-c", SCRIPT.format(blocked=blocked), str(tmp_path)], capture_output=True,
                            text=True, timeout=300, env=environment)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "core ok" in result.stdout


def test_a_missing_optional_package_names_its_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)
    with pytest.raises(MissingExtra, match=r"scikit-image is needed for the photographs .* pip install 'lgs-gpu\[eval\]'"):
        optional_import("skimage", "the photographs")
    with pytest.raises(ImportError) as caught:  # not an optional package: the plain error
        optional_import("not_a_package_anywhere", "nothing")
    assert not isinstance(caught.value, MissingExtra)
