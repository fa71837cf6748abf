"""Errors of the embedded server, with TF Serving's status codes."""
import grpc
import tensorflow as tf

HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "NOT_FOUND": 404,
    "UNIMPLEMENTED": 501,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "INTERNAL": 500,
}


class ServingError(Exception):
    """A request error: a canonical status code name and a message naming the problem."""

    def __init__(self, code, message):
        super().__init__(message)
        if code not in HTTP_STATUS:
            raise ValueError(f"unknown status code {code}")
        self.code = code
        self.message = message

    @property
    def http_status(self):
        return HTTP_STATUS[self.code]

    @property
    def grpc_code(self):
        return getattr(grpc.StatusCode, self.code)


def from_tf_error(err):
    """Maps a TensorFlow OpError raised by a signature to a ServingError."""
    codes = {
        tf.errors.InvalidArgumentError: "INVALID_ARGUMENT",
        tf.errors.OutOfRangeError: "OUT_OF_RANGE",
        tf.errors.ResourceExhaustedError: "RESOURCE_EXHAUSTED",
        tf.errors.FailedPreconditionError: "FAILED_PRECONDITION",
    }
    return ServingError(codes.get(type(err), "INTERNAL"), _useful_line(getattr(err, "message", str(err))))


def _useful_line(message):
    """The line of a TF error message that says what went wrong."""
    noise = ("Graph execution error", "Detected at node", "<stack traces unavailable>", "\t [[",
             'File "')
    lines = [line.strip() for line in message.splitlines()]
    useful = [line for line in lines if line and not line.startswith(noise)]
    text = useful[0] if useful else (lines[0] if lines else "error")
    text = text.split(" [[")[0]
    if text.startswith("assertion failed: "):  # tf.debugging.Assert's data: "[message]"
        text = text[len("assertion failed: "):]
        if text.startswith("[") and text.endswith("]") and "] [" not in text:
            text = text[1:-1]
    return text
