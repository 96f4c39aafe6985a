"""Data: the procedural CelebAMat-style generator, the real-data compositor and the folder loader.

On-disk layout (docs/design.md, "Data"), read by every CLI that takes data::

    <root>/images/<id>.png     RGB composite, 8-bit
    <root>/alphas/<id>.png     ground-truth alpha, 8-bit grey, 255 = face skin
"""
