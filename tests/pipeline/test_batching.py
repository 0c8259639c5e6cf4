"""pipeline.batching: batches prepared ahead on a thread while the GPU works."""
import threading
import time

import pytest

from zuna_lab.pipeline.batching import prefetched


def slow_items(n, log, delay=0.01):
    for i in range(n):
        time.sleep(delay)
        log.append(("made", i, threading.current_thread().name))
        yield i


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_prefetched_keeps_order_and_works_ahead_on_a_thread(depth):
    log = []
    seen = []
    for item in prefetched(slow_items(6, log), depth):
        time.sleep(0.03)              # the consumer is slower: the producer runs ahead
        seen.append(item)
        log.append(("used", item))
    assert seen == list(range(6))
    made_on = {name for kind, *rest in log if kind == "made" for name in rest[1:]}
    assert made_on == ({threading.current_thread().name} if depth == 0 else {"zuna_lab-prefetch"})
    if depth:
        # item 1 was made before item 0 was used up: work ahead
        assert log.index(("made", 1, "zuna_lab-prefetch")) < log.index(("used", 0))


def test_prefetched_raises_the_producers_error_in_order():
    def items():
        yield 1
        yield 2
        raise ValueError("bad batch")

    got = []
    with pytest.raises(ValueError, match="bad batch"):
        for item in prefetched(items(), 2):
            got.append(item)
    assert got == [1, 2]


def test_prefetched_stops_its_thread_when_the_consumer_stops_early():
    before = threading.active_count()
    stream = prefetched(iter(range(1000)), 1)
    assert next(stream) == 0
    stream.close()                    # e.g. the encoder raised: the worker must not hang on a full queue
    time.sleep(0.2)
    assert threading.active_count() == before


def test_auto_batch_size_takes_a_measured_encoder_at_its_word_for_embedding(monkeypatch):
    """On a GPU, embedding batches of a model that says what its encoder holds per token (the fast path:
    ~50 KB per token measured, against the ~420 KB per token the generic estimate assumes at 64 channels)
    are sized by it; reconstruction and other models keep the generic estimate."""
    import types

    import torch

    from zuna_lab.pipeline.batching import auto_batch_size

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (40 * 2**30, 80 * 2**30))
    config = types.SimpleNamespace(dim=1024, n_heads=8)
    plain = types.SimpleNamespace(device=torch.device("cuda"), config=config)
    fast = types.SimpleNamespace(device=torch.device("cuda"), config=config, encode_bytes_per_token=2 * 1024 * 32)
    tokens = 64 * 40                                   # a 5 s epoch of 64 channels
    generic = int(0.5 * 40 * 2**30 // (tokens * 1024 * 4 * 24 + (2 * tokens) ** 2 * 8 * 2))
    assert auto_batch_size(plain, tokens, task="embed") == auto_batch_size(fast, tokens) == generic == 32
    assert auto_batch_size(fast, tokens, task="embed") == int(0.5 * 40 * 2**30 // (tokens * 2 * 1024 * 32)) == 128
    assert auto_batch_size(fast, 12 * 40, task="embed") == 256                     # capped
    cpu = types.SimpleNamespace(device=torch.device("cpu"), config=config, encode_bytes_per_token=1)
    assert auto_batch_size(cpu, tokens, task="embed") == 1                         # the CPU's own rule
