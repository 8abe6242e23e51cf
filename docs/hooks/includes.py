"""MkDocs hook: pages that show a file kept at the repository root (README.md, ARCHITECTURE.md, BENCHMARKS.md).

Those files stay where they are, since people and tools read and append to them there; a page holds
`<!-- include: NAME.md -->` and the hook puts the file in its place. The file's links are written from the
repository root, so they are rewritten for the site: `docs/x.md` becomes `x.md`, and a link to another included
file goes to the page that includes it. Images the files show (the benchmark plots) are added to the site."""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

REPO_ROOT = Path(__file__).resolve().parents[2]
INCLUDE = re.compile(r"^<!-- include: ([\w.-]+\.md) -->$", re.MULTILINE)
PAGE_OF = {"README.md": "index.md", "ARCHITECTURE.md": "architecture.md", "BENCHMARKS.md": "benchmarks.md"}
IMAGE_FOLDERS = ("bench/plots",)  # BENCHMARKS.md's plots, linked from the repository root
LINK_TARGET = re.compile(r"\]\((?!https?:|#)([^)\s]+)\)")


def on_files(files: Files, config, **_: object) -> Files:
    for folder in IMAGE_FOLDERS:
        for image in sorted((REPO_ROOT / folder).glob("*.png")):
            path = image.relative_to(REPO_ROOT).as_posix()
            files.append(File(path, str(REPO_ROOT), config["site_dir"], config["use_directory_urls"]))
    return files


def on_page_markdown(markdown: str, **_: object) -> str:
    return INCLUDE.sub(lambda match: included(match[1]), markdown)


def included(name: str) -> str:
    if name not in PAGE_OF:
        raise ValueError(f"{name} is not one of the files a page may include: {', '.join(PAGE_OF)}")
    return LINK_TARGET.sub(lambda match: f"]({site_target(match[1])})", (REPO_ROOT / name).read_text())


def site_target(target: str) -> str:
    path, _, anchor = target.partition("#")
    path = PAGE_OF.get(path, path.removeprefix("docs/"))
    return f"{path}#{anchor}" if anchor else path
