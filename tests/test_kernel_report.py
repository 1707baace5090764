"""benchmarks/kernel_report.py: the compile-only report of the Triton kernels, and the targets it holds them to.

The report is a prediction (no GPU runs here); these tests check that it reads the machine code
right (loops, tagged branches and call sites weighted by how often they run: checked against
the interpreter running the kernels), that its JSON has what docs/kernels.md quotes, and that
the kernels meet the targets by it at 64x3x299² on sm_90.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

triton = pytest.importorskip("triton")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def report_json(tmp_path, dtype: str, batch: int = 64, size: int = 299) -> dict:
    environment = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    path = tmp_path / f"{dtype}-{batch}-{size}.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/kernel_report.py", "--arch", "90", "--batch", str(batch), "--size", str(size),
         "--dtype", dtype, "--json", str(path)],
        capture_output=True, text=True, env=environment, timeout=900, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    print(result.stdout)
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def float32_report(tmp_path_factory):
    return report_json(tmp_path_factory.mktemp("report"), "float32")


def test_the_json_holds_what_the_docs_quote(float32_report):
    kernels = float32_report["kernels"]
    assert [k["name"] for k in kernels] == ["_statistics_kernel", "_suppress_kernel"]
    for kernel in kernels:
        for field in ("name", "programs", "warps", "registers", "spill_bytes", "shared_bytes", "reads_image",
                      "load_widths_bits", "store_widths_bits", "instructions_per_pixel"):
            assert field in kernel, field
        assert kernel["reads_image"] is True
        assert set(kernel["instructions_per_pixel"]) <= {"fma", "fmaheavy", "alu", "fp64", "xu", "lsu", "cbu", "uniform"}
        assert sum(kernel["instructions_per_pixel"].values()) > 20  # a Sobel on three channels, at least
        # Issue 29's occupancy fields, consistent with the registers and the rows each program loads ahead.
        import kernel_report

        resident = kernel_report.roofline.resident_warps(kernel["registers"], kernel["warps"], kernel["shared_bytes"])
        assert kernel["resident_programs_per_sm"] == resident // kernel["warps"]
        assert kernel["waves"] == -(-kernel["programs"] // (kernel["resident_programs_per_sm"] * 132))
        assert kernel["bytes_in_flight_per_sm"] == kernel["resident_programs_per_sm"] * kernel["prefetch_rows"] * (
            3 * (64 + kernel_report.HALO_COLUMNS) * 4)  # three float32 channels of a 64-column strip and its halo
        bounds = kernel["prediction"]["bounds_us"]
        assert {"little_600ns", "little_800ns", "waves_600ns", "waves_800ns"} <= set(bounds)
        assert kernel["prediction"]["predicted_us"] >= max(value for name, value in bounds.items()
                                                           if not name.endswith("600ns"))  # fmt: skip
    assert 0 < float32_report["predicted_fraction_of_peak"] <= 1
    assert 0 < float32_report["predicted_fraction_of_peak_uint8"] <= 1
    slower, faster = float32_report["at_latency"]["800ns"], float32_report["at_latency"]["600ns"]
    assert slower["predicted_us"] == pytest.approx(float32_report["predicted_us"])
    assert faster["predicted_us"] <= slower["predicted_us"]


def test_the_kernels_meet_issue_19s_targets_by_the_model_it_set_them_with(float32_report):
    for kernel in float32_report["kernels"]:
        assert kernel["spill_bytes"] == 0
        assert kernel["programs"] >= 4 * 132  # at least four programs per H100 SM
    assert float32_report["dram_passes"] <= 3.05  # two reads and one write, plus the window statistics
    assert float32_report["previous_model"]["predicted_fraction_of_peak"] >= 0.50


def test_the_launcher_fits_the_headline_grid_in_one_wave(float32_report):
    # Its bands come from the compiled kernels' registers (occupancy.py), as on a GPU.
    for kernel in float32_report["kernels"]:
        assert kernel["waves"] == 1, kernel["name"]
        assert kernel["programs"] <= kernel["resident_programs_per_sm"] * 132


def test_float32_reaches_80_percent_of_peak_by_the_corrected_model(float32_report):
    assert float32_report["predicted_fraction_of_peak"] >= 0.80


def test_uint8_input_reaches_35_percent_of_peak_by_the_report(float32_report):
    # 37% with two columns per lane (one lane's row step: four loads for two pixels); 30% with one.
    assert float32_report["predicted_fraction_of_peak_uint8"] >= 0.35


def test_uint8_kernels_fit_in_128_registers(float32_report):
    assert max(float32_report["registers_uint8"].values()) <= 128


def _kernel(**changes) -> dict:
    """A launch as analyse() describes it: 2240 one-warp programs of 126 registers walking 43 rows."""
    kernel = {"name": "_statistics_kernel", "programs": 2240, "warps": 1, "registers": 126, "shared_bytes": 0,
              "dram_bytes": 69_000_000, "warp_instructions": {"alu": 2e7}, "l1_sectors": 1e6,
              "walk_warp_iterations": 2240 * 43, "walk_warp_instructions": 2240 * 43 * 160,
              "prologue_warp_instructions": {"alu": 400.0}, "epilogue_warp_instructions": {"lsu": 400.0},
              "prefetch_rows": 1, "row_bytes": 792}  # fmt: skip
    return {**kernel, **changes}


def test_littles_law_and_the_waves_in_the_corrected_model():
    import kernel_report

    device = kernel_report.DEVICE
    base = kernel_report.predict(_kernel())
    assert (base["resident_programs_per_sm"], base["waves"], base["tail_programs"]) == (16, 2, 2240 - 16 * 132)
    assert base["bytes_in_flight_per_sm"] == 16 * 792
    sustained = 132 * 16 * 792 / 800e-9
    assert base["bounds_us"]["little_800ns"] == pytest.approx(69e6 / sustained * 1e6)
    assert base["bounds_us"]["little_600ns"] == pytest.approx(base["bounds_us"]["little_800ns"] * 0.75)
    # The walk dominates a wave: 43 steps of one latency each, twice (the tail wave takes as long as a full one).
    walk = 43 * 800e-9 * 1e6
    assert 2 * walk < base["bounds_us"]["waves_800ns"] < 2 * walk + 10
    # Two rows in flight halve the steps' wait and double the bandwidth the bytes in flight sustain (up to the peak).
    two = kernel_report.predict(_kernel(prefetch_rows=2))
    assert two["bounds_us"]["little_800ns"] == pytest.approx(69e6 / min(2 * sustained, device["bandwidth"]) * 1e6)
    assert two["bounds_us"]["little_600ns"] == pytest.approx(69e6 / device["bandwidth"] * 1e6)
    assert two["bounds_us"]["waves_800ns"] < 0.6 * base["bounds_us"]["waves_800ns"]
    # A grid that fits one wave has no tail: about half the time.
    one_wave = kernel_report.predict(_kernel(programs=16 * 132, walk_warp_iterations=16 * 132 * 43,
                                             walk_warp_instructions=16 * 132 * 43 * 160))  # fmt: skip
    assert one_wave["waves"] == 1 and one_wave["tail_programs"] == 16 * 132
    assert one_wave["bounds_us"]["waves_800ns"] < 0.55 * base["bounds_us"]["waves_800ns"]
    # No bound below DRAM: with rows enough in flight, DRAM is the limit again.
    plenty = kernel_report.predict(_kernel(prefetch_rows=64, programs=16 * 132, walk_warp_iterations=16 * 132 * 43,
                                           walk_warp_instructions=16 * 132 * 43 * 20, warp_instructions={"alu": 1e6}))  # fmt: skip
    assert plenty["limit"] == "dram"
    assert plenty["bounds_us"]["little_800ns"] == pytest.approx(69e6 / device["bandwidth"] * 1e6)


def test_the_epilogue_burst_is_the_busiest_pipe_of_every_resident_warp():
    import kernel_report

    # The epilogue counts are per program, all its warps together: four-warp programs add the same burst,
    # 16 programs x 400 LSU warp-instructions in the full wave and one program in the tail's.
    four = {"warps": 4, "registers": 32, "walk_warp_iterations": 2240 * 43 * 4, "walk_warp_instructions": 2240 * 43 * 80}
    with_epilogue = kernel_report.predict(_kernel(**four))
    without = kernel_report.predict(_kernel(**four, epilogue_warp_instructions={}))
    assert with_epilogue["resident_programs_per_sm"] == 16 and with_epilogue["waves"] == 2
    added = with_epilogue["bounds_us"]["waves_800ns"] - without["bounds_us"]["waves_800ns"]
    assert added == pytest.approx((16 * 400 + 400) / kernel_report.DEVICE["clock_hz"] * 1e6)

    # 16 warps x 370 shuffles on the LSU pipe (1 warp-instruction per cycle per SM): 5920 cycles, about 3 µs.
    assert kernel_report.burst_cycles({"lsu": 370.0}, 16) == 5920
    assert kernel_report.burst_cycles({"alu": 100.0, "fma": 100.0}, 4) == max(800 / 4, 400 / 2, 400 / 4)


def test_a_lanes_pair_of_columns_never_moves_between_lanes():
    """Each lane loads, computes and stores its own two columns: no shuffle in a walk but where a row
    window's sums are reduced over the lanes (a pair stored as one ``[N, 2]`` store shuffled bytes
    between lanes, about 40 instructions a row). Every stage, the window mask's bytes included, at the
    headline shape: the compile-only preflight's own variant (one cold compile for both tests)."""
    code = ("import json, triton_aot as aot, kernel_report as r; from lgs_gpu.smoothing.backends.triton_path import kernels\n"
            "shuffles = {}\n"
            "for launch in aot.compile_stages((64, 3, 299, 299), 'uint8', aot.STAGE_SETS[-1], 90):\n"
            "    found, tags = r.parse_sass(aot.disassemble(launch.compiled.asm['cubin']), kernels.__file__), r.source_tags(kernels.__file__)\n"
            "    instructions = r.recover_call_sites(*found, kernels.__file__)\n"
            "    spans = r.regions(instructions, found[1], found[2], tags)\n"
            "    inside = lambda ins, kind: any(a <= ins.address <= b for a, b, tag in spans if tag.startswith(kind))\n"
            "    shuffles[launch.kernel] = [sum(ins.opcode.startswith('SHFL') and inside(ins, 'walk@') for ins in instructions),\n"
            "                               sum(ins.opcode.startswith('SHFL') and inside(ins, 'walk@') and not inside(ins, 'window-end@') for ins in instructions)]\n"
            "print(json.dumps(shuffles))")  # fmt: skip
    environment = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT / "benchmarks"), str(ROOT)])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    shuffles = json.loads(result.stdout.splitlines()[-1])
    assert shuffles["_statistics_kernel"][0] > 0  # the window sums' reductions, found
    assert shuffles["_statistics_kernel"][1] == shuffles["_suppress_kernel"][0] == 0, shuffles


SASS = textwrap.dedent("""\
    \t//## File "k.py", line 10
            /*0000*/                   MOV R1, c[0x0][0x28] ;
    \t//## File "k.py", line 12 inlined at "k.py", line 30
    \t//## File "k.py", line 30
            /*0010*/                   IADD3 R2, R2, 0x1, RZ ;
    .L_x_0:
    \t//## File "k.py", line 13 inlined at "k.py", line 30
    \t//## File "k.py", line 30
            /*0020*/                   FADD R3, R3, R4 ;
    \t//## File "k.py", line 14 inlined at "k.py", line 30
            /*0030*/               @P0 BRA `(.L_x_1) ;
            /*0040*/                   FMUL R3, R3, R3 ;
    .L_x_1:
    \t//## File "k.py", line 12 inlined at "k.py", line 30
            /*0050*/               @P1 BRA `(.L_x_0) ;
    \t//## File "k.py", line 10
            /*0060*/                   EXIT ;
    .L_x_2:
            /*0070*/                   BRA `(.L_x_2);
            /*0080*/                   NOP;
""")
SOURCE = textwrap.dedent("""\
    # line 1
    """) + "\n" * 9 + textwrap.dedent("""\
    def walk():
        for row in range(9):  # report: walk
            x = 1
            if x:  # report: rare
                y = 2
    """) + "\n" * 13 + textwrap.dedent("""\
    def kernel():
        walk()  # report: inner
    """)


def test_the_sass_reader_weights_loops_branches_and_call_sites(tmp_path):
    import kernel_report

    source = tmp_path / "k.py"
    source.write_text(SOURCE)
    assert source.read_text().splitlines()[11].strip().startswith("for row")  # line 12
    instructions, labels, targets = kernel_report.parse_sass(SASS, str(source))
    assert [i.opcode for i in instructions] == ["MOV", "IADD3", "FADD", "BRA", "FMUL", "BRA", "EXIT"]  # trap dropped
    tags = kernel_report.source_tags(str(source))
    assert tags.call_sites(instructions[1].lines) == ["inner"]
    found = kernel_report.regions(instructions, labels, targets, tags)
    assert sorted(tag for *_, tag in found) == ["rare@inner", "walk@inner"]
    counts = {"inner": 4, "walk@inner": 36, "rare@inner": 3}
    weights = kernel_report.weighted_counts(instructions, found, counts, programs=4, tags=tags)
    assert weights == [4, 4, 36, 36, 3, 36, 4]  # straight code per program; the loop; the rare branch's body
    with pytest.raises(ValueError, match="no execution count"):
        kernel_report.weighted_counts(instructions, found, {"inner": 4}, programs=4, tags=tags)


def test_a_tagged_if_is_weighted_wherever_the_compiler_puts_its_else_arm(tmp_path):
    import kernel_report

    source = tmp_path / "k.py"
    source.write_text("def kernel():\n    x = 1\n    if x:  # report: rare\n        y = 2\n    else:\n        y = 3\n    z = 4\n")
    sass = textwrap.dedent("""\
        \t//## File "k.py", line 2
                /*0000*/                   MOV R1, c[0x0][0x28] ;
        \t//## File "k.py", line 3
                /*0010*/               @P0 BRA `(.L_x_0) ;
        \t//## File "k.py", line 6
                /*0020*/                   FADD R3, R3, R4 ;
                /*0030*/                   BRA `(.L_x_1) ;
        .L_x_0:
        \t//## File "k.py", line 4
                /*0040*/                   FMUL R3, R3, R3 ;
        .L_x_1:
        \t//## File "k.py", line 7
                /*0050*/                   EXIT ;
    """)  # the else arm first, the if arm where the branch lands  # fmt: skip
    instructions, labels, targets = kernel_report.parse_sass(sass, str(source))
    tags = kernel_report.source_tags(str(source))
    found = kernel_report.regions(instructions, labels, targets, tags)
    assert found == [(0x40, 0x40, "rare")]
    weights = kernel_report.weighted_counts(instructions, found, {"rare": 0}, programs=4, tags=tags)
    assert weights == [4, 4, 4, 4, 0, 4]


def test_untagged_loops_are_refused(tmp_path):
    import kernel_report

    source = tmp_path / "k.py"
    source.write_text(SOURCE.replace("  # report: walk", ""))
    instructions, labels, targets = kernel_report.parse_sass(SASS, str(source))
    with pytest.raises(ValueError, match="tag its for statement"):
        kernel_report.regions(instructions, labels, targets, kernel_report.source_tags(str(source)))


# Triton 3.6's SASS: no "inlined at", so the two copies of walk() (one per arm of the kernel's
# if/else) name only walk's lines; the arms are told apart by the if header's branch.
SASS_WITHOUT_CALL_SITES = textwrap.dedent("""\
    \t//## File "k.py", line 30
            /*0000*/               @P0 BRA `(.L_x_2) ;
    .L_x_0:
    \t//## File "k.py", line 13
            /*0010*/                   FADD R3, R3, R4 ;
    \t//## File "k.py", line 12
            /*0020*/               @P1 BRA `(.L_x_0) ;
            /*0030*/                   BRA `(.L_x_4) ;
    .L_x_2:
    \t//## File "k.py", line 13
            /*0040*/                   FADD R3, R3, R4 ;
            /*0050*/                   FMUL R3, R3, R4 ;
    \t//## File "k.py", line 12
            /*0060*/               @P1 BRA `(.L_x_2) ;
    .L_x_4:
    \t//## File "k.py", line 34
            /*0070*/                   EXIT ;
""")
SOURCE_WITH_ARMS = SOURCE.replace("""def kernel():
    walk()  # report: inner
""", """def kernel():
    if x:
        walk()  # report: inner
    else:
        walk()  # report: outer
    return
""")


def test_call_sites_are_recovered_from_the_if_arms_when_the_sass_does_not_name_them(tmp_path):
    import kernel_report

    source = tmp_path / "k.py"
    source.write_text(SOURCE_WITH_ARMS)
    assert source.read_text().splitlines()[29].strip() == "if x:"  # line 30
    instructions, labels, targets = kernel_report.parse_sass(SASS_WITHOUT_CALL_SITES, str(source))
    tags = kernel_report.source_tags(str(source))
    with pytest.raises(ValueError, match="no execution count for the region tagged 'walk'"):
        found = kernel_report.regions(instructions, labels, targets, tags)
        kernel_report.weighted_counts(instructions, found, {"walk@inner": 9, "walk@outer": 2}, programs=2, tags=tags)
    recovered = kernel_report.recover_call_sites(instructions, labels, targets, str(source))
    found = kernel_report.regions(recovered, labels, targets, tags)
    assert sorted(tag for *_, tag in found) == ["walk@inner", "walk@outer"]
    weights = kernel_report.weighted_counts(recovered, found, {"walk@inner": 9, "walk@outer": 2, "inner": 1,
                                                               "outer": 1}, programs=2, tags=tags)  # fmt: skip
    assert weights == [2, 9, 9, 1, 2, 2, 2, 2]  # branch; the first arm's loop; its exit jump; the second arm's loop; exit
    with_sites = kernel_report.parse_sass(SASS, str(tmp_path / "k.py"))[0]
    assert kernel_report.recover_call_sites(with_sites, {}, {}, str(source)) is with_sites  # named: left alone


@pytest.mark.parametrize("shape, config, dtype", [
    pytest.param((2, 3, 37, 61), (7, 16), "float32", marks=pytest.mark.slow), ((1, 1, 40, 50), (48, 64), "float32"),
    ((1, 6, 20, 70), (5, 32), "float32"),
    # The unrolled walk's copies (about two minutes interpreted, traced line by line; one compiled).
    pytest.param((2, 3, 37, 61), (7, 16), "uint8", marks=pytest.mark.slow)])
def test_execution_counts_match_the_interpreter(shape, config, dtype):
    """The report's replay of the kernels' loops and branches counts what the interpreter executes (a walk
    unrolled by UNROLL holds as many copies of its branch, each counted a share; a run end ROW_COVER copies
    of its window-end branch)."""
    import kernel_report

    from lgs_gpu.smoothing.backends.triton_path import kernels

    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("needs the interpreter")
    import ast

    tags = kernel_report.source_tags(kernels.__file__)
    bodies = {}  # every line of the first statement of each tagged for / if body -> (its tag, first line)
    for node in ast.walk(ast.parse(Path(kernels.__file__).read_text())):
        if isinstance(node, (ast.For, ast.If)) and node.lineno in tags.headers:
            first = node.body[0]
            # A compound first statement counts by its header lines only (its body holds other tags).
            last = first.body[0].lineno - 1 if isinstance(first, (ast.For, ast.If)) else first.end_lineno
            for line in range(first.lineno, last + 1):
                bodies[line] = (tags.headers[node.lineno][0], first.lineno)
    inside: dict[int, int] = {}  # frame -> the body statement it is running (a statement spans lines)
    call_sites = {line: tag for line, tag in tags.calls.items()}
    executed: dict[str, int] = {}

    def tracer(frame, event, argument):
        if frame.f_code.co_filename != kernels.__file__:
            return tracer
        if event != "line":
            return tracer
        if frame.f_lineno not in bodies:
            inside.pop(id(frame), None)
            return tracer
        tag, statement = bodies[frame.f_lineno]
        if inside.get(id(frame)) != statement:
            inside[id(frame)] = statement
            sites, kernel, caller = [], None, frame
            while caller is not None:  # the tagged call sites it runs under, innermost first, and its kernel
                if caller.f_code.co_filename == kernels.__file__:
                    if caller is not frame and caller.f_lineno in call_sites:
                        sites.append(call_sites[caller.f_lineno])
                    if caller.f_code.co_name.endswith("_kernel"):
                        kernel = caller.f_code.co_name
                caller = caller.f_back
            name = f"{kernel}:" + "@".join([tag, *sites])
            executed[name] = executed.get(name, 0) + 1
        return tracer

    images = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    images = (images * 255).round().to(torch.uint8) if dtype == "uint8" else images
    launch_config = kernels.LaunchConfig(*config, num_warps=1)
    sys.settrace(tracer)
    try:
        kernels.stages(images, 2.3, 0.1, 15, 5, ("output",), launch_config)
    finally:
        sys.settrace(None)
    # The same launches, compiled only, give the report its arguments.
    os.environ.pop("TRITON_INTERPRET")
    try:
        code = (f"import json, torch; import triton_aot as aot; from lgs_gpu.smoothing.backends.triton_path import kernels; import kernel_report\n"
                f"counts = {{}}\n"
                f"for launch in aot.compile_stages({shape!r}, {dtype!r}, ('output',), 90, "
                f"config=kernels.LaunchConfig(*{config!r}, num_warps=1)):\n"
                f"    a = launch.arguments\n"
                f"    copies = lambda tag: a['UNROLL'] * (a['ROW_COVER'] if tag.startswith('window-end') else 1) "
                f"if tag.startswith(('run-end', 'cover-change', 'window-end')) else 1\n"
                f"    for tag, n in kernel_report.execution_counts(launch).items(): counts[launch.kernel + ':' + tag] = n * copies(tag)\n"
                f"print(json.dumps(counts))")  # fmt: skip
        environment = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        environment["PYTHONPATH"] = os.pathsep.join([str(ROOT / "benchmarks"), str(ROOT)])
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, cwd=ROOT)
        assert result.returncode == 0, result.stderr[-2000:]
        predicted = json.loads(result.stdout)
    finally:
        os.environ["TRITON_INTERPRET"] = "1"
    assert executed, "the tracer saw no tagged region run"
    for name, count in executed.items():
        assert predicted.get(name) == count, (name, count, predicted.get(name))
    # Every region the report counts ran as often in the interpreter (none it counts never ran).
    for name, count in predicted.items():
        if count and name.split(":")[1].split("@")[0] not in ("interior", "border"):
            assert executed.get(name) == count, (name, count, executed.get(name))
