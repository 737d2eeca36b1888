"""The codec's pitch stream. The encoder-side tracker: :func:`hasrd.pitch.track.track` (F0 and
voicing at the codec's frames; how it was chosen: docs/pitch.md)."""
