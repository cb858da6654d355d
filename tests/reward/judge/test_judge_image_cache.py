"""The pixel digest and the judge's cache of encodings: keyed by content, bounded, thread-safe, failures not kept."""

from __future__ import annotations

import threading
import time

import pytest
from judge_testkit import picture
from PIL import Image, ImageDraw

from easyr1.reward.judge.images import EncodedImage, EncodedImageCache, encode_image, pixel_digest


def _encoded(tag: int) -> EncodedImage:
    return encode_image(picture(tag), max_side=512, quality=90)


def test_digest_same_pixels_same_digest_any_change_differs() -> None:
    a, b = picture(3), picture(3)
    assert a is not b and pixel_digest(a) == pixel_digest(b)
    before = pixel_digest(a)
    a.putpixel((95, 63), (0, 0, 1))  # one pixel, in place, on the same object
    assert pixel_digest(a) != before
    assert pixel_digest(picture(3, size=(96, 64))) != pixel_digest(picture(3, size=(64, 96)))
    assert pixel_digest(picture(3).convert("RGBA")) != pixel_digest(picture(3))  # mode is part of the content


def test_digest_reads_the_palette_and_transparency_of_palette_images() -> None:
    p = picture(4).convert("P")
    q = p.copy()
    q.putpalette([255 - v for v in p.getpalette()])  # same indexes, other colours
    assert pixel_digest(p) != pixel_digest(q)
    t = p.copy()
    t.info["transparency"] = 0
    assert pixel_digest(p) != pixel_digest(t)


def test_digest_of_a_lazily_opened_file_and_of_a_large_image(tmp_path) -> None:
    path = tmp_path / "a.png"
    picture(5).save(path)
    with Image.open(path) as lazy:
        assert pixel_digest(lazy) == pixel_digest(picture(5))
    big = Image.new("RGB", (3000, 3000), (10, 20, 30))  # rows in several blocks: digested from a copy
    other = big.copy()
    ImageDraw.Draw(other).point((2999, 2999), fill=(11, 20, 30))
    assert pixel_digest(big) == pixel_digest(big.copy()) != pixel_digest(other)


def test_cache_hits_by_key_and_evicts_least_recently_used() -> None:
    one = _encoded(1)
    cache = EncodedImageCache(max_bytes=int(2.5 * (len(one.data_url) + len(one.url_json))))  # room for two
    encodes: list[int] = []

    def encoder(tag: int):
        return lambda: encodes.append(tag) or _encoded(tag)

    first = cache.get_or_encode(b"a", encoder(1))
    assert cache.get_or_encode(b"a", encoder(99)) is first  # hit: not encoded again
    cache.get_or_encode(b"b", encoder(2))
    cache.get_or_encode(b"a", encoder(99))  # a is now the most recent
    cache.get_or_encode(b"c", encoder(3))  # evicts b
    cache.get_or_encode(b"b", encoder(4))
    assert encodes == [1, 2, 3, 4]
    assert len(cache) == 2 and (cache.hits, cache.misses) == (2, 4)
    assert cache.bytes <= cache.max_bytes


def test_an_encoding_larger_than_the_budget_is_kept_alone() -> None:
    cache = EncodedImageCache(max_bytes=10)
    cache.get_or_encode(b"a", lambda: _encoded(1))
    cache.get_or_encode(b"b", lambda: _encoded(2))
    assert len(cache) == 1 and cache.get_or_encode(b"b", lambda: _encoded(99)).sha256 == _encoded(2).sha256


def test_failed_encoding_is_raised_and_not_kept() -> None:
    cache = EncodedImageCache()

    def broken() -> EncodedImage:
        raise OSError("truncated image")

    with pytest.raises(OSError, match="truncated"):
        cache.get_or_encode(b"k", broken)
    assert len(cache) == 0
    assert cache.get_or_encode(b"k", lambda: _encoded(1)).sha256 == _encoded(1).sha256  # tried again


def test_concurrent_requests_for_one_image_encode_it_once() -> None:
    cache = EncodedImageCache()
    encodes = []
    barrier = threading.Barrier(4)

    def slow() -> EncodedImage:
        encodes.append(1)
        time.sleep(0.2)
        return _encoded(2)

    results: list[EncodedImage] = []

    def worker() -> None:
        barrier.wait()
        results.append(cache.get_or_encode(b"shared", slow))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(encodes) == 1 and len(results) == 4 and all(r is results[0] for r in results)
