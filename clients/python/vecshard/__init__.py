"""vecshard — the Python client of a vecshard cluster (docs/clients.md).

    import vecshard
    client = vecshard.Client()                 # $VECSHARD_ROUTER
    client.create_collection("docs", dim=384, metric="cosine", shards=3)
    client.upsert("docs", ids, embeddings, payloads=texts)
    hits = client.search("docs", queries, k=10, with_payload=True)

vecshard.aio.Client is the asyncio twin; vecshard.hnswlib runs hnswlib code
on the cluster. The gRPC stubs live in vecshard.v1 (generated from proto/ at
build time); when they come from a separate directory on sys.path
(PYTHONPATH=build/gen/python), that directory's vecshard/ joins this
package's path, so `vecshard.v1` resolves there.
"""
import pkgutil

__path__ = pkgutil.extend_path(__path__, __name__)

from vecshard.errors import (  # noqa: E402
    Aborted, AlreadyExists, Cancelled, DataLoss, DeadlineExceeded, FailedPrecondition,
    Internal, InvalidArgument, NotFound, OutOfRange, PermissionDenied, ResourceExhausted,
    Unauthenticated, Unavailable, Unimplemented, Unknown, VecshardError)
from vecshard._common import (  # noqa: E402
    CollectionInfo, Coverage, GetResult, SearchResult, PAD_ID)
from vecshard.client import Client  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Client", "CollectionInfo", "Coverage", "GetResult", "SearchResult", "PAD_ID",
           "VecshardError", "Aborted", "AlreadyExists", "Cancelled", "DataLoss",
           "DeadlineExceeded", "FailedPrecondition", "Internal", "InvalidArgument",
           "NotFound", "OutOfRange", "PermissionDenied", "ResourceExhausted",
           "Unauthenticated", "Unavailable", "Unimplemented", "Unknown"]
