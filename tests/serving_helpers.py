"""Starting and talking to a real server process in tests."""
import os
import socket
import subprocess
import sys
import time

import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from conftest import ROOT


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python -m serving`` on free ports; ``wait`` blocks until models are AVAILABLE."""

    def __init__(self, *args, models=(), log_path=None):
        self.grpc_port, self.rest_port = free_port(), free_port()
        self.log = open(log_path, "w") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serving", "--port", str(self.grpc_port),
             "--rest_api_port", str(self.rest_port), *map(str, args)],
            cwd=ROOT, env=dict(os.environ), stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.rest_port}/v1/models"
        if models:
            self.wait(models)

    def wait(self, models, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc.poll() is None, "the server exited"
            try:
                states = [self.status(m) for m in models]
                if all("AVAILABLE" in s for s in states):
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"models {models} not AVAILABLE in {timeout} s")

    def status(self, model):
        reply = requests.get(f"{self.url}/{model}", timeout=10)
        if reply.status_code != 200:
            return []
        return [v["state"] for v in reply.json()["model_version_status"]]

    def versions(self, model):
        reply = requests.get(f"{self.url}/{model}", timeout=10).json()
        return {int(v["version"]): v for v in reply["model_version_status"]}

    def post(self, path, body, raw=False):
        data = body if raw else None
        return requests.post(f"{self.url}/{path}", data=data, json=None if raw else body, timeout=60)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        if self.log is not subprocess.DEVNULL:
            self.log.close()


def predict_request(model, signature, **inputs):
    """A gRPC PredictRequest for ``model``'s ``signature`` with NumPy ``inputs``."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    for k, v in inputs.items():
        request.inputs[k].CopyFrom(tf.make_tensor_proto(v))
    return request
