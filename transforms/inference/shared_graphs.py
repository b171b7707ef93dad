"""Route models that are one graph share one session on it, each route restoring its own variables before its batches.

A tiny SavedModel's load takes about 18 ms (benchmarks/route_load.py), and reading its files is under a millisecond
of it: most is the new session preparing each step at its first run (the restore op, the init op, the first batch),
and 2 ms importing the graph. Routes of one architecture with weights of their own (a model per tenant) pay it all
again for the same graph. So routes whose `saved_model.pb` is the same bytes (the same SHA-256, with the same tags)
and whose checkpoints hold the same variables (names, dtypes, shapes) share one session: the first of them is loaded
as any model is, and a later one costs reading that file, its checkpoint's index and one restore. Before a route's
batch the session's variables are restored from the route's checkpoint by the graph's own restore op, the step the
loader runs, unless they already hold that route's (about 0.3 ms for a tiny model, the step prepared once). The graph,
its restore op and the checkpoint's variables being the same, the session then computes what a session that loaded
that route alone computes.

Shared only where that holds, and otherwise loaded in full as before:
- no asset files: the loader feeds their paths to the init op, and they would be the first route's;
- no init op, or one without work (a NoOp with no inputs): an init op that fills tables would have to run per route;
- a saver (the graph's restore op), so that restoring sets every variable the checkpoint holds;
- variables of at most SHARED_VARIABLES_MAX_BYTES on disk: restoring is repeated whenever the session goes from one
  route to another (a stream's bundles can alternate routes), and for a large model reading its variables is most of
  its load anyway, so sharing it would buy little and cost a read per switch.

A shared session answers one batch at a time, its lock held from the restore to the end of the batch, so routes of
one graph do not run batches side by side in a process. A route's variables are read from its files at each switch:
if they changed on disk since the route loaded (a model directory rewritten in place), its batches fail with an error
naming it rather than serve other weights.
"""

from __future__ import annotations

import hashlib
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from transforms.inference.model_cache import SAVED_MODEL_PROTO
from transforms.inference.signatures import SERVE_TAG

SHARED_VARIABLES_MAX_BYTES = 4 * 1024 * 1024
# The loader's key of the init op's signature (tensorflow/python/saved_model/constants.py), which TF does not export.
INIT_OP_SIGNATURE_KEY = "__saved_model_init_op"


def init_op_name(meta_graph: meta_graph_pb2.MetaGraphDef) -> str | None:
    """The init op the loader runs after restoring, found as it finds it: its signature, else the main op's or the
    legacy init op's collection."""
    signature = meta_graph.signature_def.get(INIT_OP_SIGNATURE_KEY)
    if signature is not None:
        return signature.outputs[INIT_OP_SIGNATURE_KEY].name
    for key in (tf.compat.v1.saved_model.MAIN_OP_KEY, tf.compat.v1.saved_model.LEGACY_INIT_OP_KEY):
        if key in meta_graph.collection_def:
            return meta_graph.collection_def[key].node_list.value[0]
    return None


def unshared_reason(meta_graph: meta_graph_pb2.MetaGraphDef) -> str | None:
    """Why routes of this graph cannot share a session (then each loads in full), or None when they can."""
    if meta_graph.asset_file_def or tf.compat.v1.saved_model.ASSETS_KEY in meta_graph.collection_def:
        return "it has asset files"
    init = init_op_name(meta_graph)
    if init is not None:
        nodes = [node for node in meta_graph.graph_def.node if node.name == init.split(":")[0]]
        if len(nodes) != 1 or nodes[0].op != "NoOp" or nodes[0].input:
            return f"its init op {init} does work (it may fill tables)"
    if not meta_graph.saver_def.restore_op_name:
        return "it has no saver to restore its variables with"
    return None


def _meta_graph(saved_model: bytes, tags: Sequence[str]) -> meta_graph_pb2.MetaGraphDef | None:
    parsed = saved_model_pb2.SavedModel.FromString(saved_model)
    found = [graph for graph in parsed.meta_graphs if set(graph.meta_info_def.tags) == set(tags)]
    return found[0] if len(found) == 1 else None


def _variables_directory(local_path: str) -> str:
    return os.path.join(local_path, tf.saved_model.VARIABLES_DIRECTORY)


def _files_state(directory: str) -> tuple:
    """Each file of the directory with what changes when it is rewritten: inode, size, modification time."""
    with os.scandir(directory) as entries:
        states = [(entry.name, *_stat(entry.stat())) for entry in entries if entry.is_file()]
    return tuple(sorted(states))


def _stat(stat: os.stat_result) -> tuple[int, int, int]:
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _variables(variables_path: str) -> tuple:
    """The checkpoint's variables: (name, dtype, shape) each."""
    reader = tf.train.load_checkpoint(variables_path)
    dtypes, shapes = reader.get_variable_to_dtype_map(), reader.get_variable_to_shape_map()
    return tuple(sorted((name, dtypes[name].name, tuple(shapes[name])) for name in dtypes))


class RouteSession:
    """A route's model on a shared session: run as the tf.compat.v1.Session a full load gives (`run` is all the
    handlers call), each of its runs computed with the route's own variables."""

    def __init__(self, graph: SharedGraph, local_path: str, files: tuple):
        self.graph = graph
        self.local_path = local_path
        self.variables_path = os.path.join(_variables_directory(local_path), tf.saved_model.VARIABLES_FILENAME)
        self._files = files

    def run(self, fetches: Any, feed_dict: dict | None = None) -> Any:
        return self.graph.run(self, fetches, feed_dict)

    def check_unchanged(self) -> None:
        if _files_state(_variables_directory(self.local_path)) != self._files:
            raise RuntimeError(
                f"model {self.local_path}: its variables changed on disk since it was loaded (a model directory "
                "rewritten in place); expected the files it loaded, as a new version directory keeps them"
            )


class SharedGraph:
    """One session on one imported graph, serving each of its routes in turn with that route's variables."""

    def __init__(self, session: tf.compat.v1.Session, meta_graph: meta_graph_pb2.MetaGraphDef, variables: tuple):
        self._session = session
        self.variables = variables
        with session.graph.as_default():
            # What import_meta_graph makes of the saver_def: the graph's own restore op, no op added.
            self._saver = tf.compat.v1.train.Saver(saver_def=meta_graph.saver_def)
        self._lock = threading.Lock()
        self._restored: weakref.ref | None = None

    def _holds(self, route: RouteSession) -> bool:
        return self._restored is not None and self._restored() is route

    def _restore(self, route: RouteSession) -> None:
        """Called with the lock held: the session's variables become the route's, read from its checkpoint."""
        if self._holds(route):
            return
        self._restored = None  # a restore that fails part way leaves no route's variables
        route.check_unchanged()
        with self._session.graph.as_default():
            self._saver.restore(self._session, route.variables_path)
        self._restored = weakref.ref(route)

    def restore(self, route: RouteSession) -> None:
        with self._lock:
            self._restore(route)

    def held_by(self, route: RouteSession) -> None:
        """Marks the variables the session was loaded with as the route's (no restore needed)."""
        with self._lock:
            self._restored = weakref.ref(route)

    def run(self, route: RouteSession, fetches: Any, feed_dict: dict | None) -> Any:
        with self._lock:
            self._restore(route)
            return self._session.run(fetches, feed_dict=feed_dict)


class SharedGraphs:
    """One worker's shared sessions by their graph's digest, each kept while a route model uses it."""

    def __init__(self, tags: Sequence[str] = (SERVE_TAG,)):
        self._tags = tuple(tags)
        self._graphs: weakref.WeakValueDictionary[str, SharedGraph] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    def load(self, local_path: str, load_session: Callable[[], tf.compat.v1.Session]) -> Any:
        """The model at `local_path` (staged): a RouteSession on the session of its graph when it can share one,
        else what `load_session` (the model's full load) returns."""
        variables_directory = _variables_directory(local_path)
        if not os.path.isdir(variables_directory):
            return load_session()
        files = _files_state(variables_directory)
        if sum(size for _, _, size, _ in files) > SHARED_VARIABLES_MAX_BYTES:
            return load_session()
        with open(os.path.join(local_path, SAVED_MODEL_PROTO), "rb") as f:
            saved_model = f.read()
        digest = hashlib.sha256(saved_model).hexdigest()
        variables_path = os.path.join(variables_directory, tf.saved_model.VARIABLES_FILENAME)
        with self._lock:
            graph = self._graphs.get(digest)
            if graph is not None:
                if _variables(variables_path) != graph.variables:
                    return load_session()
                route = RouteSession(graph, local_path, files)
                graph.restore(route)
                return route
            meta_graph = _meta_graph(saved_model, self._tags)
            if meta_graph is None or unshared_reason(meta_graph) is not None:
                return load_session()
            variables = _variables(variables_path)
            graph = SharedGraph(load_session(), meta_graph, variables)
            route = RouteSession(graph, local_path, files)
            graph.held_by(route)
            self._graphs[digest] = graph
            return route
