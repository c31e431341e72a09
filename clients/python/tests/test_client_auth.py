"""The Python client against a router with --api-keys (docs/security.md §3):
the key by argument and by $VECSHARD_API_KEY, Unauthenticated without one,
PermissionDenied for a role too low."""
import hashlib
import os
import shutil
import tempfile
import unittest

import clientenv
from clientenv import rh

import vecshard

READ, ADMIN = "py-read-key", "py-admin-key"


class AuthTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="vs-py-keys-")
        keys = os.path.join(cls.dir, "keys")
        with open(keys, "w") as f:
            for name, role, key in (("r", "read", READ), ("a", "admin", ADMIN)):
                f.write("%s %s sha256:%s\n" % (name, role, hashlib.sha256(key.encode()).hexdigest()))
        cls.cluster = rh.RouterCluster(nodes=1, routers=1, router_args=["--api-keys", keys],
                                       client_md=[("authorization", "Bearer " + READ)]).start()
        cls.addr = cls.cluster.routers[0].addr

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_key_by_argument_and_env(self):
        with vecshard.Client(self.addr, api_key=ADMIN, retries=0) as c:
            c.create_collection("p", 4)
            self.assertIn("p", [x.name if hasattr(x, "name") else x for x in c.list_collections()])
        with vecshard.Client(self.addr, retries=0) as c:
            with self.assertRaises(vecshard.Unauthenticated):
                c.list_collections()
        os.environ["VECSHARD_API_KEY"] = READ
        try:
            with vecshard.Client(self.addr, retries=0) as c:
                c.list_collections()
                with self.assertRaises(vecshard.PermissionDenied):
                    c.drop_collection("p")
        finally:
            del os.environ["VECSHARD_API_KEY"]


if __name__ == "__main__":
    unittest.main()
