"""Decoder backends behind :mod:`vidssl.data.decode` (import them from there).

* :mod:`~vidssl.data.decoders.base`: :class:`VideoInfo`, :class:`Clip`, the :class:`Decoder`
  protocol and the frame-selection helpers both backends share.
* :mod:`~vidssl.data.decoders.pyav_decoder`: :class:`PyAVDecoder` (FFmpeg through PyAV, default).
* :mod:`~vidssl.data.decoders.torchcodec_decoder`: :class:`TorchCodecDecoder` (optional extra).
* :mod:`~vidssl.data.decoders.probing`: :func:`probe` (metadata of one file, through PyAV).
* :mod:`~vidssl.data.decoders.image`: :class:`ImageDecoder` and :func:`probe_image` (still images as
  one-frame clips, through Pillow).
* :mod:`~vidssl.data.decoders.frames`: :class:`FrameFolderDecoder` and :func:`probe_frame_folder` (a folder
  of frames, e.g. MovieNet's keyframes, as one video).
"""
