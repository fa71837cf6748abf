"""The embedded model server: TF Serving's gRPC and REST APIs over exported/.

    python -m serving --model_config_file exported/models.config --port 8500 --rest_api_port 8501
    python -m serving --model_name vae_mnist --model_base_path exported/vae_mnist --port 8500

Flag names and defaults follow ``tensorflow_model_server`` where they apply;
genzoo's own flags are --address (default 127.0.0.1), --max_rows,
--max_request_bytes, --max_inflight_requests and --rest_body_read_timeout_seconds:
limits TF Serving does not have.

Start-up order: the config is validated (an invalid one stops the server with
its error, as TF Serving fails to start), the gRPC and REST ports open, and then
the models load in the background. TF Serving loads before it opens its ports;
here a client gets answers at once: status START or LOADING, and for predict
TF Serving's NOT_FOUND "Servable not found for request" until a version is
AVAILABLE. A model that fails to load shows END with its error; the others serve.
"""
import argparse
import asyncio
import concurrent.futures
import gc
import logging
import pathlib
import signal
import threading

import grpc
from aiohttp import web
from tensorflow_serving.config import model_server_config_pb2

from serving import batching, grpc_api, metrics, models, predict, protos, rest
from serving.errors import ServingError

log = logging.getLogger("genzoo.serving")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m serving", description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=8500, help="gRPC port (0: none)")
    p.add_argument("--rest_api_port", type=int, default=0, help="REST port (0: none)")
    p.add_argument("--address", default="127.0.0.1", help="interface to bind (0.0.0.0: all)")
    p.add_argument("--model_config_file", help="ModelServerConfig in text format")
    p.add_argument("--model_config_file_poll_wait_seconds", type=float, default=0,
                   help="re-read --model_config_file this often (0: never)")
    p.add_argument("--model_name", default="default")
    p.add_argument("--model_base_path", help="serve one model from this folder")
    p.add_argument("--file_system_poll_wait_seconds", type=float, default=1,
                   help="look for new and removed versions this often (0: only at start)")
    p.add_argument("--enable_batching", action="store_true")
    p.add_argument("--batching_parameters_file", help="BatchingParameters in text format")
    p.add_argument("--enable_model_warmup", type=_bool, default=True)
    p.add_argument("--allow_version_labels_for_unavailable_models", type=_bool, nargs="?",
                   const=True, default=False,
                   help="let a new version label name a version that is not available (yet)")
    p.add_argument("--monitoring_config_file",
                   help="MonitoringConfig in text format (default: Prometheus at "
                        "/monitoring/prometheus/metrics)")
    p.add_argument("--rest_api_timeout_in_ms", type=int, default=30000)
    p.add_argument("--grpc_max_threads", type=int, default=32)
    p.add_argument("--rest_api_num_threads", type=int, default=16,
                   help="threads running REST requests' signatures")
    p.add_argument("--max_rows", type=int, default=4096,
                   help="genzoo's limit, not in TF Serving: most rows (batch size) in one "
                        "request; more is INVALID_ARGUMENT")
    p.add_argument("--max_request_bytes", type=int, default=32 << 20,
                   help="genzoo's limit, not in TF Serving: largest REST body (HTTP 413 above "
                        "it) or gRPC message, in bytes")
    p.add_argument("--max_inflight_requests", type=int, default=256,
                   help="genzoo's limit, not in TF Serving: concurrent REST predictions (counted "
                        "once their body has arrived) before HTTP 429")
    p.add_argument("--rest_body_read_timeout_seconds", type=float, default=30,
                   help="genzoo's limit, not in TF Serving: seconds a REST client may take to "
                        "send a request body (HTTP 408 and the connection closed after it), and "
                        "may leave a connection idle")
    return p.parse_args(argv)


def _bool(text):
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _model_config(args):
    """(ModelServerConfig, folder relative base paths resolve against, the file's text)."""
    if args.model_config_file and args.model_base_path:
        raise protos.ConfigError("give --model_config_file or --model_base_path, not both")
    if args.model_config_file:
        path = pathlib.Path(args.model_config_file)
        text = protos.read_text(path)
        config = protos.parse_string(text, model_server_config_pb2.ModelServerConfig(), path)
        return config, path.resolve().parent, text
    if not args.model_base_path:
        raise protos.ConfigError("give --model_config_file or --model_base_path")
    config = model_server_config_pb2.ModelServerConfig()
    entry = config.model_config_list.config.add()
    entry.name = args.model_name
    entry.base_path = str(pathlib.Path(args.model_base_path).resolve())
    entry.model_platform = "tensorflow"
    return config, pathlib.Path.cwd(), None


class Server:
    """Both front ends, the model manager, batching and metrics of one process."""

    def __init__(self, args):
        self.args = args
        config, self.base_dir, self.config_text = _model_config(args)
        monitoring = protos.MonitoringConfig()
        if args.monitoring_config_file:
            protos.parse_text(args.monitoring_config_file, monitoring)
            prometheus = monitoring.prometheus_config
            self.metrics_path = (prometheus.path or "/monitoring/prometheus/metrics") \
                if prometheus.enable else None
        else:
            self.metrics_path = "/monitoring/prometheus/metrics"
        self.metrics = metrics.Metrics() if self.metrics_path else None
        self.batcher = None
        if args.enable_batching:
            self.batcher = batching.Batcher(
                **protos.batching_parameters(args.batching_parameters_file),
                on_batch=self.metrics.batch if self.metrics else None)
        self.predictor = predict.Predictor(None, self.batcher, args.max_rows, self.metrics)
        warmup = self.predictor.run_warmup if args.enable_model_warmup else None
        self.manager = models.ModelManager(  # validates the config; loads nothing yet
            config, self.base_dir, warmup, args.allow_version_labels_for_unavailable_models)
        self.predictor.manager = self.manager
        # Unbatched signatures of both front ends run on this pool (TensorFlow
        # releases the GIL while kernels run, so calls overlap).
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max(args.rest_api_num_threads, args.grpc_max_threads), thread_name_prefix="genzoo-run")
        self.grpc_port = None
        self.rest = rest.RestApi(self.predictor, self.executor, args.rest_api_timeout_in_ms / 1000,
                                 args.max_inflight_requests, self.metrics,
                                 self.metrics_path or "/monitoring/prometheus/metrics",
                                 args.max_request_bytes,
                                 body_read_timeout=args.rest_body_read_timeout_seconds)
        self._stopped = threading.Event()

    def _watch_config(self, applied):
        """Re-reads --model_config_file every --model_config_file_poll_wait_seconds.

        As TF Serving's Server::PollFilesystemAndReloadConfig (model_servers/server.cc):
        a file that does not parse, or a config ReloadConfig refuses, is logged and
        the running config keeps serving. A refused file is tried again on every
        poll (a label may name a version that becomes available), logged once.
        """
        interval = self.args.model_config_file_poll_wait_seconds
        path = self.args.model_config_file
        reported = None
        while not self._stopped.wait(interval):
            try:
                text = pathlib.Path(path).read_text()
            except OSError as err:
                text, problem = None, f"cannot read {path}: {err.strerror}"
            else:
                if text == applied:
                    continue
                problem = self._reload_text(path, text)
                if problem is None:
                    applied, reported = text, None
                    continue
                if problem.startswith("applied"):
                    applied = text
            if problem != reported:
                log.error("model config %s: %s", path, problem)
                reported = problem

    def _reload_text(self, path, text):
        """Applies a config file's text; None when it worked, else what went wrong."""
        try:
            self.manager.reload_config(protos.parse_string(
                text, model_server_config_pb2.ModelServerConfig(), path))
        except (protos.ConfigError, ServingError) as err:
            return f"not applied, the running config keeps serving: {err}"
        except models.ModelsUnavailable as err:
            return f"applied, but {err}"
        except Exception as err:  # never let the watcher die
            return f"not applied: {type(err).__name__}: {err}"
        log.info("reloaded model config %s", path)
        return None

    async def _start_grpc(self):
        """The gRPC front end (grpc.aio) on this event loop; returns the server."""
        args = self.args
        options = [("grpc.max_receive_message_length", args.max_request_bytes),
                   ("grpc.max_send_message_length", 1 << 30),
                   ("grpc.so_reuseport", 0)]
        server = grpc.aio.server(options=options,
                                 maximum_concurrent_rpcs=args.grpc_max_threads * 8)
        grpc_api.add_services(server, self.predictor, self.metrics,
                              max_elements=args.max_request_bytes, executor=self.executor,
                              timeout=args.rest_api_timeout_in_ms / 1000)
        try:
            self.grpc_port = server.add_insecure_port(f"{args.address}:{args.port}")
        except RuntimeError as err:
            raise OSError(f"cannot bind the gRPC port {args.address}:{args.port}: {err}") from err
        await server.start()
        log.info("gRPC API at %s:%d", args.address, self.grpc_port)
        return server

    async def _serve(self):
        """Runs the gRPC and REST front ends on one event loop until stopped."""
        grpc_server = await self._start_grpc() if self.args.port else None
        runner = None
        if self.args.rest_api_port:
            runner = web.AppRunner(self.rest.app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, self.args.address, self.args.rest_api_port)
            await site.start()
            log.info("REST API at http://%s:%d", self.args.address, self.args.rest_api_port)
        # The ports answer from here on; the models load in the background.
        self.manager.start(self.args.file_system_poll_wait_seconds, on_first_pass=_freeze_gc)
        if self.args.model_config_file and self.args.model_config_file_poll_wait_seconds > 0:
            threading.Thread(target=self._watch_config, args=(self.config_text,),
                             name="genzoo-config", daemon=True).start()
        while not self._stopped.is_set():
            await asyncio.sleep(0.2)
        if grpc_server is not None:
            await grpc_server.stop(grace=2)
        if runner is not None:
            await runner.cleanup()
        if self.batcher is not None:
            self.batcher.close()

    def serve(self):
        """Starts everything and blocks until SIGINT/SIGTERM."""
        _freeze_gc()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self._stopped.set())
        try:
            asyncio.run(self._serve())
        finally:
            self.stop()

    def stop(self):
        self._stopped.set()
        self.manager.stop()
        self.executor.shutdown(wait=False)


def _freeze_gc():
    """TensorFlow and the loaded models leave millions of long-lived Python objects;
    keeping them out of the collector's full passes avoids pauses of hundreds of
    milliseconds under load. Run at start-up and again once the models have loaded."""
    gc.collect()
    gc.freeze()


def main(argv=None):
    """``python -m serving`` (serving/__main__.py sets up logging first)."""
    args = parse_args(argv)
    try:
        server = Server(args)
    except (protos.ConfigError, OSError, ServingError) as err:
        raise SystemExit(f"error: {err}") from err
    try:
        server.serve()
    except OSError as err:
        raise SystemExit(f"error: {err}") from err
