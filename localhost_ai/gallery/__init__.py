"""The model gallery: indexes, URIs, downloads, install jobs and preloading."""
