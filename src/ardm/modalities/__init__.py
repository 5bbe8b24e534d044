"""Modalities: the kind of data a model codes, and everything that depends on it.

A :class:`~ardm.modalities.modality.Modality` reads an item from a file (one strict reader
each, with one-line :class:`~ardm.errors.DataError` messages), writes it back, names its
files, says its unit (``bpd``, ``bpc``, ``bits/sample``), makes masks for conditional
generation and shows samples:

* :mod:`ardm.modalities.image`: PNG (and other lossless) images, grids and GIFs, inpainting masks;
* :mod:`ardm.modalities.text`: UTF-8 text over a model's alphabet, text with holes;
* :mod:`ardm.modalities.audio`: mono 16-bit PCM WAV, waveform pictures;
* :mod:`ardm.modalities.registry`: the modality of a dataset or of a trained model, chosen once::

    from ardm.modalities.registry import modality_for
    modality = modality_for(model)  # then modality.read / write / unit / suffix / ...

This package file imports nothing, so that dataset readers below it
(:func:`ardm.data.images.read_png`) can use the image reader without an import circle.
"""
