"""Virtual channels over saved datasets, in this process or on Dask distributed
(``acquire-vf predict --profile P DATASET --out OUT.ome.zarr --cluster local:2``).

Dask is imported only when a cluster is asked for (``pip install 'acquire-vf[cluster]'``).
"""

from acquire_vf.distributed._cluster import open_client
from acquire_vf.distributed._predict import predict_dataset, sidecar_name
from acquire_vf.distributed._source import DatasetSource

__all__ = ["DatasetSource", "open_client", "predict_dataset", "sidecar_name"]
