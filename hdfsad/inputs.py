"""Input files: resolve URIs/globs on any Hadoop FileSystem and check each file once.

Runs on the driver through Spark's JVM (the same Hadoop configuration the executors use), so
``hdfs://``, ``file://``, ``s3a://`` … all work. Finds empty files and compressed files that are
truncated or corrupt (Hadoop's codecs fail on them at the end of the stream).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence


class InputError(ValueError):
    """The inputs cannot be read at all (nothing matches, a path does not exist)."""


@dataclass(frozen=True)
class InputFile:
    path: str                  # as Hadoop prints it (what the readers are given)
    uri: str                   # URL-encoded form, as Spark's _metadata.file_path shows it
    size: int                  # bytes on storage
    compressed: bool
    problem: str | None        # a reject reason for the whole file (empty_file, truncated_file)
    detail: str = ""           # what was found, for the rejects table


def _jvm_path(spark, uri: str):
    return spark._jvm.org.apache.hadoop.fs.Path(uri)


def resolve(spark, uris: Sequence[str]) -> list[str]:
    """Every file the URIs and globs name, sorted; fails on a pattern that matches nothing.

    Directories are listed recursively, skipping hidden and ``_``-prefixed files (``_SUCCESS``).
    """
    conf = spark._jsc.hadoopConfiguration()
    files: list[str] = []
    for uri in uris:
        path = _jvm_path(spark, uri)
        fs = path.getFileSystem(conf)
        statuses = fs.globStatus(path)
        if statuses is None or len(statuses) == 0:
            raise InputError(f"input '{uri}' matches no file or directory")
        for st in statuses:
            if st.isDirectory():
                it = fs.listFiles(st.getPath(), True)
                while it.hasNext():
                    f = it.next()
                    name = f.getPath().getName()
                    if not name.startswith((".", "_")):
                        files.append(f.getPath().toString())
            else:
                files.append(st.getPath().toString())
    return sorted(set(files))


def inspect(spark, path: str, verify_compressed: bool) -> InputFile:
    """Size, compression and whole-file problems of one input file."""
    jvm = spark._jvm
    conf = spark._jsc.hadoopConfiguration()
    jpath = _jvm_path(spark, path)
    fs = jpath.getFileSystem(conf)
    size = fs.getFileStatus(jpath).getLen()
    uri = jpath.toUri().toString()
    if ":" not in uri.split("/")[0]:   # a scheme-less path: qualify it like Spark does
        uri = fs.makeQualified(jpath).toUri().toString()
    codec = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(conf).getCodec(jpath)
    compressed = codec is not None
    if size == 0:
        return InputFile(path, uri, size, compressed, "empty_file", "0 bytes")
    if compressed and verify_compressed:
        stream = None
        try:
            stream = codec.createInputStream(fs.open(jpath))
            decompressed = stream.transferTo(jvm.java.io.OutputStream.nullOutputStream())
        except Exception as exc:  # py4j wraps the Java IOException
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            for line in str(exc).splitlines():
                if "Exception:" in line or "Error:" in line:
                    message = line.strip()
                    break
            return InputFile(path, uri, size, compressed, "truncated_file", message[:500])
        finally:
            if stream is not None:
                try:
                    stream.close()
                except Exception:
                    pass
        if decompressed == 0:
            return InputFile(path, uri, size, compressed, "empty_file", "no data after decompression")
    return InputFile(path, uri, size, compressed, None)


def inspect_all(spark, paths: Sequence[str], verify_compressed: bool, threads: int = 4) -> list[InputFile]:
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(paths)))) as pool:
        return list(pool.map(lambda p: inspect(spark, p, verify_compressed), paths))
