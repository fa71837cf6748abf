"""Serving throughput and latency: REST and gRPC, with and without batching.

    python benchmarks/serving.py [--model vae_mnist] [--signature sample] [--requests 400]
    python benchmarks/serving.py --case head_of_line [--big_rows 4096]

Case ``throughput``: starts the embedded server on exported/models.config twice
(without, then with --enable_batching), sends one-row requests of
``--signature`` from 1, 8 and 32 concurrent clients over REST and over gRPC,
and prints requests per second and p50/p99 latency beside a direct in-process
call of the same signature (the floor). Targets (issue 3): at concurrency 1 the
median gRPC overhead over the direct call is at most 2 ms; at concurrency 32,
batching at least triples the throughput of ``sample`` on vae_mnist.

Case ``head_of_line`` (issue 18): one event loop serves both protocols, so a
large REST request must not hold up small ones. It sends ``--big_rows``-row
REST ``sample`` requests back to back and meanwhile one-row gRPC and REST
requests one at a time, and prints their p50/p99/max latency beside the same
requests with nothing else running. Target: p99 under 100 ms while the large
requests run.

The load generator is one asyncio loop (grpc.aio and aiohttp clients, requests
built before the clock starts), as wrk or ghz would be: it shares this
machine's cores with the server, so it has to cost little per request.
"""
import argparse
import asyncio
import concurrent.futures
import gc
import json
import pathlib
import sys
import tempfile
import time

import aiohttp
import grpc
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import zoo  # noqa: F401,E402  (sets TensorFlow's log level before TensorFlow loads)
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

from serving_helpers import ServerProcess  # noqa: E402
from training.callbacks import hardware  # noqa: E402
from zoo import saving  # noqa: E402

BATCHING = ("max_batch_size { value: 64 }\nbatch_timeout_micros { value: 2000 }\n"
            "num_batch_threads { value: 2 }\nmax_enqueued_batches { value: 1000 }\n")


def _inputs(signature_fn, i):
    feed = {}
    for key, spec in signature_fn.structured_input_signature[1].items():
        shape = [1] + spec.shape.as_list()[1:]
        if key == "seed":
            feed[key] = np.array([[0, i]], np.int64)
        elif key == "label":
            feed[key] = np.array([i % 10], np.int64)
        else:
            feed[key] = np.zeros(shape, spec.dtype.as_numpy_dtype)
    return feed


def _summary(times, wall):
    return len(times) / wall, 1e3 * np.percentile(times, 50), 1e3 * np.percentile(times, 99)


def _run(call, concurrency, total):
    """(requests/s, p50 ms, p99 ms) of ``total`` calls from ``concurrency`` threads."""
    per_thread = max(1, total // concurrency)

    def worker(t):
        times = []
        for j in range(per_thread):
            start = time.perf_counter()
            call(t * per_thread + j)
            times.append(time.perf_counter() - start)
        return times

    for i in range(5):  # warm code paths
        call(10 ** 6 + i)
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        times = np.concatenate(list(pool.map(worker, range(concurrency))))
    return _summary(times, time.perf_counter() - start)


async def _run_async(call, requests, concurrency):
    """``_run`` for a coroutine ``call(request)``: the first 5 requests warm up, then
    ``concurrency`` tasks share the others."""
    warm, requests = requests[:5], requests[5:]
    per_task = max(1, len(requests) // concurrency)

    async def worker(t):
        times = []
        for request in requests[t * per_task:(t + 1) * per_task]:
            start = time.perf_counter()
            await call(request)
            times.append(time.perf_counter() - start)
        return times

    for request in warm:  # warm the connection and the server's code paths
        await call(request)
    start = time.perf_counter()
    times = np.concatenate(await asyncio.gather(*(worker(t) for t in range(concurrency))))
    return _summary(times, time.perf_counter() - start)


async def _measure(protocol, port, model, signature, feeds, levels):
    """{concurrency: (requests/s, p50, p99)} of one-row requests over ``protocol``."""
    results = {}
    if protocol == "grpc":
        requests = []
        for feed in feeds:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model
            request.model_spec.signature_name = signature
            for key, value in feed.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            requests.append(request)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

            async def call(request):
                await stub.Predict(request, timeout=60)

            for c in levels:
                results[c] = await _run_async(call, requests, c)
        return results
    url = f"http://127.0.0.1:{port}/v1/models/{model}:predict"
    bodies = [json.dumps({"signature_name": signature,
                          "instances": [{k: v[0].tolist() for k, v in feed.items()}]}).encode()
              for feed in feeds]
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=max(levels))) as session:

        async def call(body):
            async with session.post(url, data=body, headers=headers) as reply:
                await reply.read()
                if reply.status != 200:
                    raise RuntimeError(f"{reply.status}: {await reply.text()}")

        for c in levels:
            results[c] = await _run_async(call, bodies, c)
    return results


async def _one_at_a_time(call, requests, stop=None):
    """Latencies (s) of ``requests`` sent one after another (until ``stop`` is set)."""
    times = []
    for request in requests:
        if stop is not None and stop.is_set():
            break
        start = time.perf_counter()
        await call(request)
        times.append(time.perf_counter() - start)
    return np.array(times)


async def _head_of_line(server, model, rows, count):
    """{mode: latencies} of one-row gRPC and REST ``sample`` requests, alone and while
    ``rows``-row REST requests run back to back, then gRPC ones that only ask for the
    latents (no JSON, little to send: what running the model alone costs the small
    requests); and the large REST requests' durations."""
    url = f"http://127.0.0.1:{server.rest_port}/v1/models/{model}:predict"
    headers = {"Content-Type": "application/json"}
    one_rest = [json.dumps({"signature_name": "sample", "inputs": {"seed": [[1, i]]}}).encode()
                for i in range(count)]
    one_grpc = []
    for i in range(count):
        request = predict_pb2.PredictRequest()
        request.model_spec.name, request.model_spec.signature_name = model, "sample"
        request.inputs["seed"].CopyFrom(tf.make_tensor_proto(np.array([[1, i]], np.int64)))
        one_grpc.append(request)
    big = json.dumps({"signature_name": "sample",
                      "inputs": {"seed": [[2, i] for i in range(rows)]}}).encode()
    big_grpc = predict_pb2.PredictRequest()
    big_grpc.model_spec.name, big_grpc.model_spec.signature_name = model, "sample"
    big_grpc.inputs["seed"].CopyFrom(tf.make_tensor_proto(
        np.array([[2, i] for i in range(rows)], np.int64)))
    big_grpc.output_filter.append("latents")  # the model runs whole; little to send back
    results, big_times = {}, []
    options = [("grpc.max_receive_message_length", 1 << 30)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}", options=options) as channel, \
            aiohttp.ClientSession() as session:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

        async def grpc_call(request):
            await stub.Predict(request, timeout=120)

        async def rest_call(body):
            async with session.post(url, data=body, headers=headers) as reply:
                await reply.read()
                if reply.status != 200:
                    raise RuntimeError(f"{reply.status}: {await reply.text()}")

        async def big_loop(stop, over_grpc=False):
            while not stop.is_set():
                start = time.perf_counter()
                if over_grpc:
                    await grpc_call(big_grpc)
                else:
                    await rest_call(big)
                    big_times.append(time.perf_counter() - start)

        for warm in range(5):
            await grpc_call(one_grpc[warm])
            await rest_call(one_rest[warm])
        await rest_call(big)
        results["grpc alone"] = await _one_at_a_time(grpc_call, one_grpc)
        results["rest alone"] = await _one_at_a_time(rest_call, one_rest)
        stop = asyncio.Event()
        loader = asyncio.ensure_future(big_loop(stop))
        await asyncio.sleep(0.05)  # the first large request is on its way
        measured = await asyncio.gather(_one_at_a_time(grpc_call, one_grpc),
                                        _one_at_a_time(rest_call, one_rest))
        results[f"grpc beside {rows}-row REST"], results[f"rest beside {rows}-row REST"] = measured
        stop.set()
        await loader
        stop = asyncio.Event()
        loader = asyncio.ensure_future(big_loop(stop, over_grpc=True))
        await asyncio.sleep(0.05)
        measured = await asyncio.gather(_one_at_a_time(grpc_call, one_grpc),
                                        _one_at_a_time(rest_call, one_rest))
        results[f"grpc beside {rows}-row gRPC*"], results[f"rest beside {rows}-row gRPC*"] = measured
        stop.set()
        await loader
    return results, np.array(big_times)


def _print_head_of_line(args):
    path = saving.version_path(args.model)
    print(f"# {hardware()}; TensorFlow {tf.__version__}; {args.model}:sample (version "
          f"{path.name}); one-row requests one at a time, {args.requests} per protocol; "
          f"{args.big_rows}-row REST sample requests back to back beside them")
    server = ServerProcess("--model_config_file", ROOT / "exported" / "models.config",
                           "--max_rows", max(4096, args.big_rows), models=(args.model,))
    try:
        results, big = asyncio.run(_head_of_line(server, args.model, args.big_rows, args.requests))
    finally:
        server.stop()
    print(f"{'one-row requests':<34} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for mode, times in results.items():
        print(f"{mode:<34} {len(times):>5} {1e3 * np.percentile(times, 50):>8.2f} "
              f"{1e3 * np.percentile(times, 99):>8.2f} {1e3 * times.max():>8.2f}")
    print(f"{args.big_rows}-row REST requests: {len(big)} done, {big.mean():.2f} s each on average "
          "(parse, run, render, transfer); gRPC*: the same rows, only the latents sent back")
    worst = max(np.percentile(t, 99) for mode, t in results.items() if "-row REST" in mode)
    print(f"\nworst p99 of one-row requests beside the large ones: {1e3 * worst:.1f} ms "
          "(target < 100 ms)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--case", choices=["all", "throughput", "head_of_line"], default="all",
                   help="which measurement to run (default: all)")
    p.add_argument("--model", default="vae_mnist")
    p.add_argument("--signature", default="sample")
    p.add_argument("--requests", type=int, default=400, help="requests per measurement")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--big_rows", type=int, default=4096,
                   help="rows of the large REST requests of the head_of_line case")
    args = p.parse_args(argv)
    gc.collect()
    gc.freeze()  # keep TensorFlow's objects out of this (client) process's GC pauses
    if args.case in ("all", "throughput"):
        _throughput(args)
    if args.case in ("all", "head_of_line"):
        if args.case == "all":
            print()
        _print_head_of_line(args)


def _throughput(args):
    levels = [int(c) for c in args.concurrency.split(",")]
    path = saving.version_path(args.model)
    loaded = tf.saved_model.load(str(path))
    fn = loaded.signatures[args.signature]

    def direct(i):
        return fn(**{k: tf.constant(v) for k, v in _inputs(fn, i).items()})

    print(f"# {hardware()}; TensorFlow {tf.__version__}; {args.model}:{args.signature} "
          f"(version {path.name}), one row per request, {args.requests} requests per row")
    print(f"{'mode':<28} {'conc':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    results = {}
    for c in levels:
        results[("direct", c)] = _run(direct, c, args.requests)
        print(f"{'direct in-process (floor)':<28} {c:>4} {results[('direct', c)][0]:>9.1f} "
              f"{results[('direct', c)][1]:>8.2f} {results[('direct', c)][2]:>8.2f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        params = pathlib.Path(tmp) / "batching.txt"
        params.write_text(BATCHING)
        for batching in (False, True):
            extra = ["--enable_batching", "--batching_parameters_file", params] if batching else []
            server = ServerProcess("--model_config_file", ROOT / "exported" / "models.config",
                                   "--enable_model_warmup", "true", *extra, models=(args.model,))
            try:
                for protocol in ("grpc", "rest"):
                    port = server.grpc_port if protocol == "grpc" else server.rest_port
                    feeds = [_inputs(fn, i) for i in range(args.requests + 5)]
                    measured = asyncio.run(_measure(protocol, port, args.model, args.signature,
                                                    feeds, levels))
                    for c in levels:
                        mode = f"{protocol} {'batching' if batching else 'no batching'}"
                        results[(mode, c)] = r = measured[c]
                        print(f"{mode:<28} {c:>4} {r[0]:>9.1f} {r[1]:>8.2f} {r[2]:>8.2f}", flush=True)
            finally:
                server.stop()
    one = min(levels)
    many = max(levels)
    overhead = results[("grpc no batching", one)][1] - results[("direct", one)][1]
    gain = results[("grpc batching", many)][0] / results[("grpc no batching", many)][0]
    gain_rest = results[("rest batching", many)][0] / results[("rest no batching", many)][0]
    print(f"\nmedian gRPC overhead at concurrency {one}: {overhead:.2f} ms (target <= 2 ms)")
    print(f"batching speed-up at concurrency {many}: gRPC {gain:.2f}x, REST {gain_rest:.2f}x "
          f"(target >= 3x)")


if __name__ == "__main__":
    main()
