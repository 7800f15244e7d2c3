"""Crash-safe storage, OME-TIFF or OME-Zarr: append-only frames, a journal, repair, and
verified readback."""

from acquire_vf.storage._folder import check_output, prepare_output
from acquire_vf.storage._journal import frame_crc, journal_path, journal_skips, read_journal
from acquire_vf.storage._layout import DatasetLayout
from acquire_vf.storage._missing import missing_summary
from acquire_vf.storage._ometiff import IDENTITY_TAG, OmeTiffWriter, repair
from acquire_vf.storage._omezarr import PHYSICAL_COLOURS, OmeZarrWriter, channel_type, repair_zarr
from acquire_vf.storage._reader import DatasetFile, MissingPlane, ZarrDatasetFile, open_dataset
from acquire_vf.storage._sink import BackgroundWriter, BacklogFull, FileSink, FrameSink

WRITERS: dict[str, tuple[type, str]] = {"ome-tiff": (OmeTiffWriter, ".ome.tif"),
                                        "ome-zarr": (OmeZarrWriter, ".ome.zarr")}
"""``[storage] format`` -> (its writer, its file or store suffix)."""

__all__ = [
    "IDENTITY_TAG", "PHYSICAL_COLOURS", "WRITERS", "BacklogFull", "BackgroundWriter", "DatasetFile",
    "DatasetLayout", "FileSink", "FrameSink",
    "MissingPlane", "OmeTiffWriter", "OmeZarrWriter", "ZarrDatasetFile", "check_output",
    "frame_crc", "journal_path", "journal_skips", "missing_summary", "open_dataset",
    "prepare_output",
    "channel_type", "read_journal", "repair", "repair_zarr",
]
