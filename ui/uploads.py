"""Documents added and removed from the UI.

An upload is untrusted. Its name is cut down to a plain file name (no folders, no control
characters), its type and size are limited, and it is written only inside the uploads
folder. It is read once before it is moved into place, so a broken file never replaces a
working upload of the same name, and an unreadable file is reported, not indexed.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import unicodedata
from pathlib import Path

from embeddings import EmbeddingError
from rag.documents import SUPPORTED_SUFFIXES, DocumentError, load_document
from rag.engine import Engine
from rag.store import IndexStateError

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_STEM_CHARS = 120
_NOT_IN_NAMES = set('<>:"/\\|?*')  # separators, and characters Windows forbids in names


class UploadRejected(ValueError):
    """An upload that is not saved; the message says why, in Chinese."""


def safe_filename(name: str) -> str:
    """The file name only: no folders (``../`` included), no control or invisible format
    characters, no leading dots; Chinese and other letters are kept."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    kept = "".join(ch for ch in base
                   if ch not in _NOT_IN_NAMES and not unicodedata.category(ch).startswith("C"))
    kept = " ".join(kept.split()).lstrip(". ")  # a leading dot would make it a hidden file
    stem, suffix = os.path.splitext(kept)
    return stem[:MAX_STEM_CHARS] + suffix.lower()


def _target(uploads_dir: Path, name: str) -> Path:
    if Path(name).suffix not in SUPPORTED_SUFFIXES or not Path(name).stem:
        raise UploadRejected(f"只支持 {' '.join(SUPPORTED_SUFFIXES)} 文件")
    uploads_dir.mkdir(parents=True, exist_ok=True)
    target = uploads_dir / name
    # The name has no separators, but an existing symlink of that name could point elsewhere.
    if target.resolve().parent != uploads_dir.resolve():
        raise UploadRejected("文件名不可用")
    return target


def add_upload(engine: Engine, source: Path, uploads_dir: Path,
               max_bytes: int = MAX_UPLOAD_BYTES) -> str:
    """Save one uploaded file into ``uploads_dir`` and index it; a line saying what happened."""
    name = safe_filename(source.name)
    try:
        target = _target(uploads_dir, name)
        if source.stat().st_size > max_bytes:
            raise UploadRejected(f"文件超过 {max_bytes // (1024 * 1024)} MB")
    except UploadRejected as exc:
        return f"未加入 {name or source.name}：{exc}"
    # Staged under its own name in a hidden folder (which indexing skips), so messages
    # about the file name it, and a half-copied file never sits under the final name.
    with tempfile.TemporaryDirectory(dir=uploads_dir, prefix=".upload-") as staging:
        staged = Path(staging) / target.name
        try:
            shutil.copyfile(source, staged)
        except OSError as exc:
            return f"未加入 {target.name}：无法保存（{exc.strerror or exc}）"
        try:
            load_document(staged)
        except DocumentError as exc:
            return f"未加入 {target.name}：无法读取（{exc}）"
        os.replace(staged, target)
    try:
        report = engine.index([target], progress=False)
    except (IndexStateError, EmbeddingError) as exc:
        return f"未加入 {target.name}：索引失败（{exc}）"
    if report.skipped:
        return f"未加入 {target.name}：无法读取（{report.skipped[0][1]}）"
    changed = report.added + report.updated
    if not changed:
        return f"{target.name} 与已索引的版本相同，无需更新"
    meta = engine.store.manifest().documents[changed[0]]
    return f"已加入 {target.name}：《{meta['title']}》，{meta['paragraphs']} 段，现在可以检索"


def remove_documents(engine: Engine, doc_ids: list[str], uploads_dir: Path) -> str:
    """Remove documents from the index, and delete their files when they were uploads."""
    if not doc_ids:
        return "请先选择要删除的文档"
    try:
        documents = engine.store.manifest().documents
        engine.remove(list(doc_ids))
    except (KeyError, IndexStateError) as exc:
        return f"未删除：{exc.args[0] if exc.args else exc}"
    uploads = uploads_dir.resolve()
    for doc_id in doc_ids:
        path = Path(documents[doc_id]["path"]).resolve()
        if uploads in path.parents:
            path.unlink(missing_ok=True)
    return "已删除：" + "、".join(f"《{documents[d]['title']}》" for d in doc_ids)
