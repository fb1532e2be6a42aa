"""Bytes to pixels and back: the service's codecs, used by the routes, the workers and the `relight` command.

imaging      upload bytes -> uint8 sRGB pixels (+ alpha, metadata) and back; every failure a clear 4xx
metadata     EXIF, XMP, DPI and PNG text carried back, bounded, and what an upload's metadata costs
embedded_exif  mending an EXIF block inside a file that Pillow cannot open because of it (AVIF)
formats      the answer formats: their names as people write them, media types, file suffixes, the default
limits       the sizes each answer format can encode
negotiation  which format an answer gets: ?format=, Accept with q-values, the default; settled before queueing
colour       ICC profiles: the network sees sRGB, the answer keeps the upload's colour space
heif         HEIC/HEIF (the iPhone camera's format) through pillow-heif
fastjpeg     simplejpeg for plain JPEG uploads
fastpng      fpng for PNG answers
"""
