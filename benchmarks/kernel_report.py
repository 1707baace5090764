"""What each LGS Triton kernel would cost on a GPU, read off its compiled machine code: a prediction.

Compile-only (no GPU): the launcher runs on ``meta`` tensors of the asked shape under
:func:`triton_aot.compile_only` (``benchmarks/triton_aot.py``), so every kernel is specialised and compiled as
a CUDA launch would compile it, and nothing runs. For each launch this script reads

* the grid (``programs``), warps, registers, spills and shared memory (``cuobjdump``);
* the SASS with source lines (``nvdisasm -g``). Loops are back-edges; each loop and each
  data-independent branch the kernels take (``if`` on geometry only) carries a ``# report: NAME``
  tag on its source line, and :func:`execution_counts` gives how often each tagged region runs
  for this launch (from the same window geometry the kernels compute). Every instruction is
  weighted by the count of the innermost region holding it; untagged forward branches are assumed
  taken never (their code counted every time: an upper bound);
* the global load / store widths, and the DRAM bytes each launch moves (each tensor it reads or
  writes, once: :data:`TRAFFIC`).

The throughput model (:func:`predict`) bounds each launch's time by the largest of: DRAM bytes at
the peak bandwidth; issue slots (4 warp-instructions per cycle per SM); each pipe at its rate
(:data:`PIPE_RATES`); L1 sectors (4 per cycle per SM); and the memory parallelism the kernel has
(issue 29): the rows each resident program has outstanding give the bytes in flight per SM, and
Little's law turns them into a bandwidth at a loaded DRAM latency (:data:`LOADED_LATENCIES_NS`,
both reported); and the waves of programs the grid needs (a partial last wave, the tail, takes a
whole program's time), each wave's programs walking their rows one latency per step and paying
their prologue's round trips and their prologue's and epilogue's instructions together, all
resident warps at once (the bursts). The headline is the slowest bound at
:data:`HEADLINE_LATENCY_NS`, plus a fixed gap per launch; :func:`predict_previous` keeps the
model before issue 29 so that a GPU's measurements say which was right. Every constant is an
assumption stated here and in docs/kernels.md, to be corrected by ``benchmarks/gpu_check.py``.

Run: ``python benchmarks/kernel_report.py --arch 90 --batch 64 --size 299 --dtype float32 --json FILE``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import roofline  # noqa: E402  (after the interpreter is switched off)

# The GPU the prediction is for: H100 SXM5 (NVIDIA's datasheet; boost clock).
DEVICE = {"name": "H100 SXM (predicted)", "multiprocessors": roofline.H100_MULTIPROCESSORS,
          "clock_hz": roofline.H100_CLOCK_HZ, "bandwidth": roofline.H100_BANDWIDTH}  # fmt: skip
# Warp-instructions per cycle per SM each pipe retires on sm_90 (4 sub-partitions; assumptions from
# NVIDIA's throughput tables: 128 FP32 lanes, 64 INT32 / FP64 lanes, 16 special-function lanes).
PIPE_RATES = {"fma": 4.0, "fmaheavy": 2.0, "alu": 2.0, "fp64": 2.0, "xu": 0.5, "lsu": 1.0, "cbu": 2.0,
              "uniform": 4.0}  # fmt: skip
ISSUE_RATE = 4.0  # warp-instructions per cycle per SM (one per sub-partition)
L1_SECTORS_PER_CYCLE = 4  # 128 bytes per cycle per SM
MEMORY_LATENCY_CYCLES = 800  # the previous model's DRAM load latency (about 400 ns at 1.98 GHz, unloaded)
# A DRAM load's latency with the memory system loaded: the range issue 29's reading takes (600-800 ns); the
# headline takes the slower.
LOADED_LATENCIES_NS = (600, 800)
HEADLINE_LATENCY_NS = 800
# Columns each program loads per row beyond its strip: the Sobel's left and right neighbours.
HALO_COLUMNS = 2
SINGLE_WARP_CPI = 2.0  # cycles per instruction of one warp on its own (dependent instructions stall it)
LAUNCH_GAP_SECONDS = 2e-6  # between two dependent launches on one stream
# Memory round trips each program waits on outside its row walk: the suppress prologue reads the
# tiles' ranges, then their partial sums, then (after a barrier) its pass flags.
# Issue 29's reading of the sm_90 SASS counts about four dependent ones in the suppress prologue.
ROUND_TRIPS = {"_statistics_kernel": 1, "_suppress_kernel": 4, "_means_kernel": 2}
PREVIOUS_ROUND_TRIPS = {"_statistics_kernel": 1, "_suppress_kernel": 3, "_means_kernel": 2}  # the previous model's

_PIPES = {
    "fma": {"FFMA", "FADD", "FMUL", "FFMA32I", "FADD32I", "FMUL32I", "HFMA2", "HADD2", "HMUL2", "FSWZADD"},
    "fmaheavy": {"IMAD", "IMUL", "IDP", "IMAD32I", "IMUL32I"},
    "fp64": {"DADD", "DMUL", "DFMA", "DSETP", "DMNMX"},
    "xu": {"MUFU", "I2F", "F2I", "F2F", "FRND", "POPC", "FLO", "BREV", "I2I"},
    "lsu": {"LDG", "STG", "LD", "ST", "LDS", "STS", "LDSM", "ATOM", "ATOMG", "ATOMS", "RED", "LDGSTS", "LDL", "STL",
            "SHFL", "MATCH", "LDC", "LDGDEPBAR", "CCTL"},
    "cbu": {"BRA", "BRX", "EXIT", "RET", "CALL", "BSSY", "BSYNC", "WARPSYNC", "BAR", "YIELD", "BMOV", "NANOSLEEP",
            "KILL", "BPT", "DEPBAR", "MEMBAR", "ERRBAR"},
}  # fmt: skip
# Each launch's DRAM traffic: the tensors it reads and writes, each moved once (stage outputs only
# when their flag is set). Tables of window statistics stay about 1% of a plane.
TRAFFIC = {
    "_statistics_kernel": {"reads": ["x_ptr"], "writes": ["partials_ptr", "ranges_ptr"]},
    "_means_kernel": {"reads": ["partials_ptr", "ranges_ptr"], "writes": ["means_ptr"]},
    "_suppress_kernel": {"reads": ["x_ptr", "partials_ptr", "ranges_ptr"],
                         "writes": ["passes_ptr", ("out_ptr", "WRITE_OUTPUT"), ("map_ptr", "WRITE_MAP"),
                                    ("normalised_ptr", "WRITE_NORMALISED"), ("mask_ptr", "WRITE_MASK")]},
}  # fmt: skip


def pipe(opcode: str) -> str:
    """The sm_90 pipe an opcode issues to (uniform-datapath ``U*`` instructions to ``uniform``)."""
    root = opcode.split(".")[0]
    for name, members in _PIPES.items():
        if root in members:
            return name
    if root.startswith("U") or root in ("R2UR", "S2UR", "VOTEU"):
        return "uniform"
    return "alu"  # IADD3, LOP3, SHF, ISETP, FSETP, SEL, FSEL, LEA, PRMT, FMNMX, VIADD, MOV, I2FP, ...


@dataclass
class Instruction:
    address: int
    opcode: str
    operands: str
    lines: tuple[int, ...]  # source lines in the kernels' file: innermost first, then the inlined call sites
    predicated: bool

    @property
    def memory_width(self) -> int | None:
        """Bits per lane of a global load or store, else None."""
        root, *suffixes = self.opcode.split(".")
        if root not in ("LDG", "STG"):
            return None
        for suffix, bits in (("U8", 8), ("S8", 8), ("U16", 16), ("S16", 16), ("64", 64), ("128", 128)):
            if suffix in suffixes:
                return bits
        return 32


_INSTRUCTION = re.compile(r"^\s*/\*([0-9a-f]+)\*/\s+(.*?)\s*;")
_LOCATION = re.compile(r'"(.*?)", line (\d+)')
_LABEL = re.compile(r"^(\.L_x_\d+):")
_TARGET = re.compile(r"`\((\.L_x_\d+)\)")


def parse_sass(text: str, source: str) -> tuple[list[Instruction], dict[str, int], dict[int, str]]:
    """``nvdisasm -gi`` output: instructions (no NOP padding, no trailing trap), label addresses, branch targets."""
    instructions, labels, targets = [], {}, {}
    chain: tuple[int, ...] = ()
    pending: list[str] = []
    comment_block = False
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("//##"):
            # The first comment of a block names the innermost line and its call sites ("inlined at ...").
            lines = tuple(int(line) for file, line in _LOCATION.findall(stripped)
                          if os.path.basename(file) == os.path.basename(source))  # fmt: skip
            if not comment_block:
                chain = lines
            comment_block = True
            continue
        comment_block = False
        match = _LABEL.match(stripped)
        if match:
            pending.append(match.group(1))
            continue
        match = _INSTRUCTION.match(raw)
        if not match:
            continue
        address, body = int(match.group(1), 16), match.group(2)
        predicated = body.startswith("@")
        if predicated:
            body = body.split(None, 1)[1]
        opcode, _, operands = body.partition(" ")
        for label in pending:
            labels[label] = address
        pending = []
        target = _TARGET.search(operands)
        if target:
            targets[address] = target.group(1)
        if not opcode.startswith("NOP"):
            instructions.append(Instruction(address, opcode, operands, chain, predicated))
    # The trap after the code (``.L_x_n: BRA .L_x_n``) never runs.
    instructions = [ins for ins in instructions if labels.get(targets.get(ins.address, ""), -1) != ins.address]
    return instructions, labels, targets


@dataclass(frozen=True)
class Tags:
    """The ``# report: NAME`` tags of the kernels' source, by the lines they cover."""

    headers: dict[int, tuple[str, str]]  # line of a for / if header -> (tag, "for" | "if")
    calls: dict[int, str]  # any line of a tagged statement holding a call -> tag
    else_lines: dict[int, range] = field(default_factory=dict)  # line of a tagged if header with an else -> its lines

    def call_sites(self, lines: tuple[int, ...]) -> list[str]:
        """The tags of the call sites an instruction was inlined through, innermost first."""
        return [self.calls[line] for line in lines[1:] if line in self.calls]


def source_tags(source: str) -> Tags:
    """Read the tags: on a ``for`` or ``if`` header (a loop, or the code a branch jumps over), or on a
    statement calling a jit function (the code inlined from that call)."""
    import ast

    text = Path(source).read_text(encoding="utf-8")
    tagged = {}
    for number, line in enumerate(text.splitlines(), start=1):
        match = re.search(r"#\s*report:\s*([\w-]+)", line)
        if match:
            tagged[number] = match.group(1)
    headers, calls, else_lines, used = {}, {}, {}, set()
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.stmt):
            continue
        if isinstance(node, (ast.For, ast.If)):
            header_end = node.body[0].lineno - 1
            for number in range(node.lineno, header_end + 1):
                if number in tagged:
                    kind = "for" if isinstance(node, ast.For) else "if"
                    headers.update({line: (tagged[number], kind) for line in range(node.lineno, header_end + 1)})
                    used.add(number)
                    if kind == "if" and node.orelse:
                        arm = range(node.orelse[0].lineno, node.orelse[-1].end_lineno + 1)
                        else_lines.update({line: arm for line in range(node.lineno, header_end + 1)})
        elif isinstance(node, (ast.Assign, ast.Expr)) and isinstance(node.value, ast.Call | ast.Tuple):
            for number in range(node.lineno, node.end_lineno + 1):
                if number in tagged:
                    calls.update({line: tagged[number] for line in range(node.lineno, node.end_lineno + 1)})
                    used.add(number)
    unused = sorted(set(tagged) - used)
    if unused:
        raise ValueError(f"'# report:' tags on lines {unused} are on no for / if header or call statement")
    return Tags(headers, calls, else_lines)


def recover_call_sites(instructions: list[Instruction], labels: dict[str, int], targets: dict[int, str],
                       source: str) -> list[Instruction]:  # fmt: skip
    """Give each instruction the tagged call site it was inlined through where the SASS does not say.

    Triton 3.6's PTX has ``.loc`` directives without ``inlined_at`` (3.8's have them), so its SASS
    names only the innermost line. The kernels call each walk from both arms of one ``if`` (an
    interior and a border copy): the code from the ``if`` header's forward branch to its target is
    the body (the first arm), and from the target to the join (the furthest forward target the body
    branches to, or the end where both arms exit) the ``else`` arm. Each instruction there gets its arm's call line as call site.
    SASS that names call sites is returned as it is.
    """
    import ast

    if any(len(ins.lines) > 1 for ins in instructions):
        return instructions
    arms = []  # (if header lines, first arm's call line, second arm's call line)
    for node in ast.walk(ast.parse(Path(source).read_text(encoding="utf-8"))):
        if isinstance(node, ast.If) and len(node.body) == 1 and len(node.orelse) == 1:
            body, orelse = node.body[0], node.orelse[0]
            if all(isinstance(arm, ast.Expr | ast.Assign) and isinstance(arm.value, ast.Call) for arm in (body, orelse)):
                arms.append((range(node.lineno, body.lineno), body.lineno, orelse.lineno))
    by_address = {ins.address: ins for ins in instructions}
    recovered = {ins.address: ins for ins in instructions}
    for header, first_call, second_call in arms:
        branches = [address for address in sorted(targets) if address in by_address and by_address[address].predicated
                    and by_address[address].lines and by_address[address].lines[0] in header
                    and labels.get(targets[address], -1) > address]  # fmt: skip
        if not branches:
            continue
        branch = branches[0]
        second = labels[targets[branch]]
        # Where the arms join: the furthest the body branches forward past the else arm's start, or,
        # when both arms end in EXIT (the suppress kernel's do), the end of the code.
        join = max((labels[label] for address, label in targets.items()
                    if branch < address < second and labels.get(label, -1) >= second),
                   default=instructions[-1].address + 1)  # fmt: skip
        for ins in instructions:
            arm = first_call if branch < ins.address < second else second_call if second <= ins.address < join else None
            if arm is not None:
                recovered[ins.address] = Instruction(ins.address, ins.opcode, ins.operands,
                                                     (ins.lines[0] if ins.lines else header.start, arm), ins.predicated)
    return [recovered[ins.address] for ins in instructions]


def _qualified(tag: str, call_sites: list[str]) -> str:
    return "@".join([tag, *call_sites])


def regions(instructions: list[Instruction], labels: dict[str, int], targets: dict[int, str],
            tags: Tags) -> list[tuple[int, int, str]]:  # fmt: skip
    """``(first address, last address, qualified tag)`` of every loop and of every tagged branch's skipped code.

    A loop is a back-edge's span; its tag is the one tagged ``for`` header whose instructions lie in
    it and not only in a loop nested inside it (the compiler may place the back-edge itself on any
    line). A tag is qualified by the tagged call sites the code was inlined through (``walk@interior``).
    """
    by_address = {ins.address: ins for ins in instructions}
    loops, found = [], []
    for address, label in targets.items():
        if label not in labels or address not in by_address:
            continue
        target, branch = labels[label], by_address[address]
        if target <= address:
            loops.append((target, address))
        else:
            tag, statement = tags.headers.get(branch.lines[0], (None, None)) if branch.lines else (None, None)
            if statement == "if" and branch.predicated:  # a tagged `if`: the code it jumps over
                first, last = address + 16, target - 16
                arm = tags.else_lines.get(branch.lines[0])
                skipped = [ins for ins in instructions if first <= ins.address <= last and ins.lines]
                if arm is not None and 2 * sum(any(line in arm for line in ins.lines) for ins in skipped) > len(skipped):
                    # The compiler placed the else arm first: the if arm runs from the target to where the
                    # else arm jumps past it.
                    last = max(labels[label] for at, label in targets.items() if first <= at <= last
                               and labels.get(label, -1) > target) - 16  # fmt: skip
                    first = target
                found.append((first, last, _qualified(tag, tags.call_sites(branch.lines))))
    for first, last in loops:
        nested = [(a, b) for a, b in loops if first <= a and b <= last and (a, b) != (first, last)]
        headers, sites = {}, Counter()
        for ins in instructions:  # the loop's own code: not a nested loop's
            if not first <= ins.address <= last or not ins.lines or any(a <= ins.address <= b for a, b in nested):
                continue
            tag, statement = tags.headers.get(ins.lines[0], (None, None))
            if statement == "for":
                headers.setdefault(ins.lines[0], tag)
            named = tuple(tags.call_sites(ins.lines))
            if named:
                sites[named] += 1
        # The call sites the loop's own code names most: its header's code may carry none (the
        # compiler can drop them from a loop's control, as triton 3.8 does for the suppress walk).
        if sites:
            headers = {line: _qualified(tag, list(sites.most_common(1)[0][0])) for line, tag in headers.items()}
        if len(set(headers.values())) != 1:
            raise ValueError(f"the loop at SASS 0x{first:x}-0x{last:x} holds {len(headers)} tagged for headers "
                             f"{sorted(headers)}: tag its for statement '# report: NAME'")  # fmt: skip
        found.append((first, last, next(iter(headers.values()))))
    return found


def weighted_counts(instructions: list[Instruction], found: list[tuple[int, int, str]], counts: dict[str, float],
                    programs: int, tags: Tags) -> list[float]:  # fmt: skip
    """Executions of each instruction over the whole launch: its innermost region's count, else its
    innermost tagged call site's, else once per program."""
    weights = []
    for ins in instructions:
        holding = [(last - first, tag) for first, last, tag in found if first <= ins.address <= last]
        sites = tags.call_sites(ins.lines)
        tag = min(holding)[1] if holding else _qualified(sites[0], sites[1:]) if sites else None
        if tag is None:
            weights.append(float(programs))
        elif tag in counts:
            weights.append(float(counts[tag]))
        else:
            raise ValueError(f"no execution count for the region tagged {tag!r}")
    return weights


# -- how often each tagged region runs: the kernels' geometry, replayed -------------------------


def _window_start(index: int, step: int, last_start: int) -> int:
    return min(index * step, last_start)


def _first_covering(pixel: int, extent: int, step: int, count: int) -> int:
    return min(max(pixel - extent + step, 0) // step, count - 1)


def _last_covering(pixel: int, step: int, last_start: int, count: int) -> int:
    return count - 1 if pixel >= last_start else pixel // step


def _bands(height: int, band_rows: int) -> list[tuple[int, int]]:
    return [(top, min(top + band_rows, height)) for top in range(0, height, band_rows)]


def run_ends(top: int, bottom: int, height: int, rows: tuple[int, int, int, int]) -> int:
    """How often the statistics kernel's ``run-end`` branch runs in one band (its loop, replayed)."""
    count, extent, step, last_start = rows
    next_end = _first_covering(top, extent, step, count)
    next_start = _last_covering(top, step, last_start, count) + 1
    runs = 0
    for row in range(top, bottom):
        start_row = _window_start(next_start, step, last_start) if next_start < count else height
        end_row = _window_start(next_end, step, last_start) + extent
        if row + 1 in (start_row, end_row, bottom):
            runs += 1
            next_start += row + 1 == start_row
            next_end += row + 1 == end_row
    return runs


def windows_met(top: int, bottom: int, rows: tuple[int, int, int, int]) -> int:
    """How many row windows meet one band: the statistics kernel's ``window-end`` branch stores each once."""
    count, extent, step, last_start = rows
    return _last_covering(bottom - 1, step, last_start, count) - _first_covering(top, extent, step, count) + 1


def cover_changes(top: int, bottom: int, rows: tuple[int, int, int, int]) -> int:
    """How often the suppress kernel's ``cover-change`` branch runs in one band (its loop, replayed)."""
    count, extent, step, last_start = rows
    first, last = _first_covering(top, extent, step, count), _last_covering(top, step, last_start, count)
    changes = 0
    for row in range(top, bottom):
        new_first = first + (_window_start(first, step, last_start) + extent <= row)
        new_last = last + (last + 1 < count and _window_start(last + 1, step, last_start) <= row)
        if (new_first, new_last) != (first, last):
            changes += 1
            first, last = new_first, new_last
    return changes


def execution_counts(launch) -> dict[str, float]:
    """Total executions over the launch of each (qualified) ``# report:`` region of ``launch``'s kernel."""
    a = launch.arguments
    images = launch.grid[1] if len(launch.grid) > 1 else 1
    # Statistics and suppress programs are one per tile: n_tiles is grid dimension 0 there.
    n_tiles = int(a["n_tiles"]) if "n_tiles" in a else launch.grid[0]
    tile_ranges = launch.programs * math.ceil(n_tiles / int(a.get("RANGE_BLOCK", 1)))
    if launch.kernel == "_means_kernel":
        return {"tile-ranges": tile_ranges}
    height, width, channels, strips = int(a["height"]), int(a["width"]), int(a["channels"]), int(a["n_strips"])
    block = int(a["BLOCK_W"])
    rows = (int(a["n_row_windows"]), int(a["row_extent"]), int(a["STEP"]), int(a["row_last_start"]))
    bands = _bands(height, int(a["band_rows"]))
    # The kernels' test: a strip off the image's first and last column walks unclamped.
    interior = sum(1 for strip in range(strips) if strip > 0 and (strip + 1) * block < width)
    per_band = [run_ends(top, bottom, height, rows) if launch.kernel == "_statistics_kernel"
                else cover_changes(top, bottom, rows) for top, bottom in bands]  # fmt: skip
    branch = "run-end" if launch.kernel == "_statistics_kernel" else "cover-change"
    statistics = launch.kernel == "_statistics_kernel"
    counts = {} if statistics else {"tile-ranges": tile_ranges}
    reloading = not a["CHANNELS"]  # more channels than the walk carries: a loop over them per row
    # A walk steps UNROLL rows per iteration (the last may pass the band's bottom) and holds UNROLL copies
    # of its branch (and the run-end branch ROW_COVER copies of its window-end branch): each copy counts
    # an equal share of the branch's runs.
    unroll = int(a["UNROLL"])
    stored = sum(windows_met(top, bottom, rows) for top, bottom in bands) / unroll / int(a.get("ROW_COVER", 1))
    iterations = sum(-(-(bottom - top) // unroll) for top, bottom in bands)
    for kind, n in (("interior", interior), ("border", strips - interior)):
        walk = images * n * height
        counts |= {kind: images * n * len(bands), f"walk@{kind}": images * n * iterations,
                   f"{branch}@{kind}": images * n * sum(per_band) / unroll}  # fmt: skip
        if statistics:
            counts[f"window-end@{kind}"] = images * n * stored
        if reloading:
            counts[f"channels@{kind}"] = walk * channels
            if not statistics and a["WRITE_OUTPUT"]:
                counts[f"output-channels@{kind}"] = walk * channels
    return counts


# -- the model -----------------------------------------------------------------------------------


def _tensor_bytes(value) -> int:
    return value.numel() * value.element_size() if hasattr(value, "element_size") else 0


def dram_bytes(launch) -> tuple[int, bool]:
    """Bytes the launch moves through DRAM (:data:`TRAFFIC`), and whether it reads the image."""
    traffic, a = TRAFFIC[launch.kernel], launch.arguments
    total = 0
    for entry in traffic["reads"] + traffic["writes"]:
        name, flag = entry if isinstance(entry, tuple) else (entry, None)
        if flag is None or a.get(flag):
            total += _tensor_bytes(a[name])
    return total, "x_ptr" in traffic["reads"]


def analyse(launch, source: str) -> dict:
    """The per-launch report: resources, widths, weighted instructions by pipe, DRAM bytes."""
    from triton_aot import disassemble, resource_usage

    cubin = launch.compiled.asm["cubin"]
    usage = resource_usage(cubin)
    instructions, labels, targets = parse_sass(disassemble(cubin), source)
    instructions = recover_call_sites(instructions, labels, targets, source)
    tags = source_tags(source)
    found = regions(instructions, labels, targets, tags)
    counts = execution_counts(launch)
    weights = weighted_counts(instructions, found, counts, launch.programs, tags)
    warps = launch.num_warps
    by_pipe: dict[str, float] = defaultdict(float)
    loads: dict[int, float] = defaultdict(float)
    stores: dict[int, float] = defaultdict(float)
    sectors = 0.0
    for ins, weight in zip(instructions, weights, strict=True):
        if ins.opcode.startswith("NOP"):
            continue
        executed = weight * warps  # warp-instructions over the launch
        by_pipe[pipe(ins.opcode)] += executed
        width = ins.memory_width
        if width is not None:
            (loads if ins.opcode.startswith("LDG") else stores)[width] += executed
            sectors += executed * (math.ceil(32 * width / 8 / 32) + 1)  # a warp's lanes, plus one misaligned sector
    a = launch.arguments
    x = a.get("x_ptr")
    pixels = x.shape[0] * x.shape[2] * x.shape[3] if x is not None else None
    moved, reads_image = dram_bytes(launch)
    walk = sum(count for tag, count in counts.items() if tag.startswith("walk@")) * warps
    walk_regions = [(first, last) for first, last, tag in found if tag.startswith("walk@")]
    in_walk = sum(weight * warps for ins, weight in zip(instructions, weights, strict=True)
                  if any(first <= ins.address <= last for first, last in walk_regions))  # fmt: skip
    # Outside the walks: the epilogue is the code after the last walk, the prologue the rest (each arm's
    # set-up before its walk), as warp-instructions per program by pipe.
    end_of_walks = max((last for _, last in walk_regions), default=-1)
    prologue: dict[str, float] = defaultdict(float)
    epilogue: dict[str, float] = defaultdict(float)
    for ins, weight in zip(instructions, weights, strict=True):
        if not any(first <= ins.address <= last for first, last in walk_regions):
            part = epilogue if walk_regions and ins.address > end_of_walks else prologue
            part[pipe(ins.opcode)] += weight * warps / launch.programs
    return {
        "name": launch.kernel, "programs": launch.programs, "warps": warps, **usage,
        "reads_image": reads_image, "dram_bytes": moved,
        "load_widths_bits": sorted(loads), "store_widths_bits": sorted(stores),
        "warp_instructions": dict(by_pipe), "l1_sectors": sectors,
        "walk_warp_iterations": walk, "walk_warp_instructions": in_walk,
        "prologue_warp_instructions": dict(prologue), "epilogue_warp_instructions": dict(epilogue),
        "row_bytes": row_bytes(launch) if walk else 0,
        "instructions_per_pixel": {name: count * 32 / pixels for name, count in sorted(by_pipe.items())}
        if pixels else None,
    }  # fmt: skip


def row_bytes(launch) -> int:
    """Bytes one program loads per row step of its walk: every channel of its strip and the halo."""
    a, x = launch.arguments, launch.arguments["x_ptr"]
    return int(a["channels"]) * (int(a["BLOCK_W"]) + HALO_COLUMNS) * x.element_size()


def burst_cycles(per_program: dict[str, float], programs_per_sm: int) -> float:
    """Cycles an SM takes when ``programs_per_sm`` programs issue ``per_program`` warp-instructions (by
    pipe) at once: the slower of the issue slots and the busiest pipe (DRAM idle meanwhile)."""
    total = sum(per_program.values()) * programs_per_sm
    return max([total / ISSUE_RATE, *(n * programs_per_sm / PIPE_RATES[p] for p, n in per_program.items())])


def occupancy(kernel: dict, device: dict = DEVICE) -> dict:
    """Resident programs per SM, the waves the grid needs, the last wave's programs, and the bytes in
    flight per SM (the rows each resident program has outstanding)."""
    sms = device["multiprocessors"]
    resident = roofline.resident_warps(kernel["registers"], kernel["warps"], kernel["shared_bytes"]) // kernel["warps"]
    slots = resident * sms
    waves = math.ceil(kernel["programs"] / slots)
    return {
        "resident_programs_per_sm": resident,
        "waves": waves,
        "tail_programs": kernel["programs"] - (waves - 1) * slots,
        "bytes_in_flight_per_sm": resident * kernel.get("prefetch_rows", 0) * kernel.get("row_bytes", 0),
    }


def _waves_seconds(kernel: dict, resident: int, tail: int, latency_cycles: float, device: dict) -> float:
    """The grid's time wave by wave: each wave's programs walk their rows one iteration at a time (an
    iteration takes a latency over the iterations loaded ahead, or the wave's issue slots if longer), after
    their prologue's round trips and instruction burst and before their epilogue's burst; no wave beats DRAM."""
    sms, clock = device["multiprocessors"], device["clock_hz"]
    programs, warps = kernel["programs"], kernel["warps"]
    full = (programs - tail) // (resident * sms)
    rows = kernel["walk_warp_iterations"] / (programs * warps) if kernel["walk_warp_iterations"] else 0
    per_step = kernel["walk_warp_instructions"] / kernel["walk_warp_iterations"] if rows else 0
    ahead = max(kernel.get("prefetch_rows", 0) / kernel.get("walk_unroll", 1), 1)  # iterations a load has to arrive
    round_trips = ROUND_TRIPS.get(kernel["name"], 1)
    total = 0.0
    for count, per_sm in ((full, resident), (1, math.ceil(tail / sms))):
        step = max(latency_cycles / ahead, per_step * per_sm * warps / ISSUE_RATE)
        # The prologue and epilogue counts are per program, all its warps together.
        cycles = (round_trips * latency_cycles + burst_cycles(kernel["prologue_warp_instructions"], per_sm)
                  + rows * step + burst_cycles(kernel["epilogue_warp_instructions"], per_sm))  # fmt: skip
        in_wave = min(programs, per_sm * sms)
        total += count * max(cycles / clock, kernel["dram_bytes"] * in_wave / programs / device["bandwidth"])
    return total


def predict(kernel: dict, device: dict = DEVICE) -> dict:
    """Time bounds of one launch (µs), the slowest at :data:`HEADLINE_LATENCY_NS` (and at each latency of
    :data:`LOADED_LATENCIES_NS`), and the occupancy they rest on, from :func:`analyse`'s numbers."""
    sms, clock = device["multiprocessors"], device["clock_hz"]
    share = math.ceil(kernel["programs"] / sms) / kernel["programs"]  # the busiest SM's share of the launch
    occupied = occupancy(kernel, device)
    resident = occupied["resident_programs_per_sm"]
    bounds = {
        "dram": kernel["dram_bytes"] / device["bandwidth"],
        "issue": sum(kernel["warp_instructions"].values()) * share / ISSUE_RATE / clock,
        "l1": kernel["l1_sectors"] * share / L1_SECTORS_PER_CYCLE / clock,
    }
    for name, count in kernel["warp_instructions"].items():
        bounds[f"pipe_{name}"] = count * share / PIPE_RATES[name] / clock
    for nanoseconds in LOADED_LATENCIES_NS:
        latency = nanoseconds * 1e-9
        if occupied["bytes_in_flight_per_sm"]:  # Little's law: the bandwidth the bytes in flight sustain
            sustained = min(sms * occupied["bytes_in_flight_per_sm"] / latency, device["bandwidth"])
            bounds[f"little_{nanoseconds}ns"] = kernel["dram_bytes"] / sustained
        bounds[f"waves_{nanoseconds}ns"] = _waves_seconds(kernel, resident, occupied["tail_programs"],
                                                          latency * clock, device)  # fmt: skip
    headlines = {}
    for nanoseconds in LOADED_LATENCIES_NS:
        other = {f"{kind}_{n}ns" for kind in ("little", "waves") for n in LOADED_LATENCIES_NS if n != nanoseconds}
        considered = {name: value for name, value in bounds.items() if name not in other}
        limit = max(considered, key=considered.get)
        headlines[nanoseconds] = {"limit": limit, "predicted_us": (bounds[limit] + LAUNCH_GAP_SECONDS) * 1e6}
    headline = headlines[HEADLINE_LATENCY_NS]
    return {"bounds_us": {k: v * 1e6 for k, v in bounds.items()}, **headline, **occupied,
            "at_latency": {f"{n}ns": value for n, value in headlines.items()}}  # fmt: skip


def predict_previous(kernel: dict, device: dict = DEVICE) -> dict:
    """The model before issue 29 (one unloaded latency, overlapped by the rows loaded ahead; no waves, no
    bursts), kept beside :func:`predict` so that a GPU's measurements say which was right."""
    sms, clock = device["multiprocessors"], device["clock_hz"]
    per_sm = math.ceil(kernel["programs"] / sms) / (kernel["programs"] / sms)  # the busiest SM's share, over the mean
    share = per_sm / sms
    warp_instructions = sum(kernel["warp_instructions"].values())
    bounds = {
        "dram": kernel["dram_bytes"] / device["bandwidth"],
        "issue": warp_instructions * share / ISSUE_RATE / clock,
        "l1": kernel["l1_sectors"] * share / L1_SECTORS_PER_CYCLE / clock,
    }
    for name, count in kernel["warp_instructions"].items():
        bounds[f"pipe_{name}"] = count * share / PIPE_RATES[name] / clock
    resident = min(roofline.resident_warps(kernel["registers"], kernel["warps"], kernel["shared_bytes"]),
                   math.ceil(kernel["programs"] / sms) * kernel["warps"])  # fmt: skip
    # Rounds of programs an SM runs one after another, each waiting on its round trips outside the walk.
    rounds = math.ceil(kernel["programs"] * kernel["warps"] / (resident * sms))
    waits = rounds * PREVIOUS_ROUND_TRIPS.get(kernel["name"], 1) * MEMORY_LATENCY_CYCLES
    if kernel["walk_warp_iterations"]:
        steps = kernel["walk_warp_iterations"] * share  # row steps one SM's warps take
        per_step = kernel["walk_warp_instructions"] / kernel["walk_warp_iterations"]
        prefetched = kernel.get("prefetch_rows", 0) / kernel.get("walk_unroll", 1)  # iterations ahead
        # One warp's row step: the load latency not overlapped by the work done since it was issued.
        step_cycles = max(MEMORY_LATENCY_CYCLES - prefetched * per_step * SINGLE_WARP_CPI, 0) + per_step * SINGLE_WARP_CPI
        bounds["latency"] = (steps * step_cycles / resident + waits) / clock
    else:
        per_warp = warp_instructions / (kernel["programs"] * kernel["warps"])
        bounds["latency"] = (waits + rounds * per_warp * SINGLE_WARP_CPI) / clock
    limit = max(bounds, key=bounds.get)
    return {"bounds_us": {k: v * 1e6 for k, v in bounds.items()}, "limit": limit,
            "predicted_us": (bounds[limit] + LAUNCH_GAP_SECONDS) * 1e6, "resident_warps": resident}  # fmt: skip


def report(arch: int, batch: int, size: int, dtype: str, channels: int = 3, stages=("output",), config=None,
           device: dict = DEVICE) -> dict:  # fmt: skip
    """Compile one ``lgs_stages`` call and predict it on ``device``: kernels, whole-call time, fraction of peak.

    Needs the kernels compiled: this process must not have imported them under ``TRITON_INTERPRET=1``.
    """
    from triton_aot import compile_stages

    from lgs_gpu.smoothing.backends.triton_path import kernels as kernels_module

    launches = compile_stages((batch, channels, size, size), dtype, tuple(stages), arch, config=config,
                              multiprocessors=device["multiprocessors"])  # fmt: skip
    rows = []
    for launch in launches:
        row = analyse(launch, kernels_module.__file__)
        carried = launch.arguments.get("CHANNELS", 0)
        row["prefetch_rows"] = int(launch.arguments["PREFETCH"]) if row["walk_warp_iterations"] and carried else 0
        row["walk_unroll"] = int(launch.arguments.get("UNROLL", 1))
        row["prediction"] = predict(row, device)
        row["prediction_previous"] = predict_previous(row, device)
        for name in ("bytes_in_flight_per_sm", "resident_programs_per_sm", "waves"):
            row[name] = row["prediction"][name]
        rows.append(row)
    total_us = sum(row["prediction"]["predicted_us"] for row in rows)
    at_latency = {key: sum(row["prediction"]["at_latency"][key]["predicted_us"] for row in rows)
                  for key in rows[0]["prediction"]["at_latency"]}  # fmt: skip
    previous_us = sum(row["prediction_previous"]["predicted_us"] for row in rows)
    moved = sum(row["dram_bytes"] for row in rows)
    element = {"uint8": 1, "float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}[dtype]
    image = batch * channels * size * size * element
    return {
        "arch": arch, "batch": batch, "size": size, "dtype": dtype, "channels": channels, "stages": list(stages),
        "device": device, "kernels": rows, "predicted_us": total_us, "dram_bytes": moved,
        "dram_passes": moved / image, "predicted_fraction_of_peak": moved / (total_us * 1e-6) / device["bandwidth"],
        "latency_ns": HEADLINE_LATENCY_NS,
        "at_latency": {key: {"predicted_us": us, "predicted_fraction_of_peak": moved / (us * 1e-6) / device["bandwidth"]}
                       for key, us in at_latency.items()},
        "previous_model": {"predicted_us": previous_us,
                           "predicted_fraction_of_peak": moved / (previous_us * 1e-6) / device["bandwidth"]},
        "copy_roof_us": 2 * image / device["bandwidth"] * 1e6,
    }  # fmt: skip


def markdown(result: dict) -> str:
    lines = [f"Predicted (no GPU ran this): {result['batch']}x{result['channels']}x{result['size']}² "
             f"{result['dtype']}, sm_{result['arch']}, at {result['device']['name']}.", "",
             "| kernel | programs | resident / SM | waves | in flight / SM | regs | spills | loads (bits) | "
             "stores (bits) | instr / px | limit | µs | 600 ns | previous model |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for k in result["kernels"]:
        per_pixel = sum(k["instructions_per_pixel"].values()) if k["instructions_per_pixel"] else float("nan")
        p = k["prediction"]
        lines.append(f"| `{k['name']}` | {k['programs']} | {k['resident_programs_per_sm']} | {k['waves']} "
                     f"({p['tail_programs']} in the last) | {k['bytes_in_flight_per_sm'] / 1024:.1f} KiB | "
                     f"{k['registers']} | {k['spill_bytes']} | {k['load_widths_bits']} | {k['store_widths_bits']} | "
                     f"{per_pixel:.0f} | {p['limit']} | {p['predicted_us']:.1f} | "
                     f"{p['at_latency']['600ns']['predicted_us']:.1f} | {k['prediction_previous']['predicted_us']:.1f} |")  # fmt: skip
    fast = result["at_latency"]["600ns"]
    lines += ["", f"Whole call at {result['latency_ns']} ns: {result['predicted_us']:.1f} µs, {result['dram_passes']:.2f} "
              f"image passes of DRAM traffic, **{result['predicted_fraction_of_peak']:.0%} of peak bandwidth** "
              f"(600 ns: {fast['predicted_us']:.1f} µs, {fast['predicted_fraction_of_peak']:.0%}; the previous model: "
              f"{result['previous_model']['predicted_us']:.1f} µs, {result['previous_model']['predicted_fraction_of_peak']:.0%}; "
              f"a copy: {result['copy_roof_us']:.1f} µs)."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    os.environ.pop("TRITON_INTERPRET", None)  # the kernels must be defined compiled, not interpreted
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=299)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=["uint8", "float16", "bfloat16", "float32", "float64"])
    parser.add_argument("--stages", default="output", help="comma-separated lgs_stages stages (default: output)")
    parser.add_argument("--json", help="write the report here")
    args = parser.parse_args(argv)
    stages = tuple(args.stages.split(","))
    result = report(args.arch, args.batch, args.size, args.dtype, args.channels, stages)
    uint8 = result if args.dtype == "uint8" else report(args.arch, args.batch, args.size, "uint8", args.channels, stages)
    result["predicted_fraction_of_peak_uint8"] = uint8["predicted_fraction_of_peak"]
    result["registers_uint8"] = {kernel["name"]: kernel["registers"] for kernel in uint8["kernels"]}
    print(markdown(result), end="")
    if uint8 is not result:
        print("\n" + markdown(uint8), end="")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
