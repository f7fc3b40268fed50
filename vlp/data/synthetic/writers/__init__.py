"""Writers of the shapes world, one per public format, each returning a typed summary of what it wrote.

Every writer takes the output directory, the scenes and the :class:`~vlp.data.synthetic.config.SynthConfig`
and writes one part in exactly its public layout (COCO images, Karpathy captions, VQAv2, GQA, NLVR2,
SNLI-VE, LXMERT region features, a WordPiece tokenizer, the README). Writers of text also return the texts
they wrote, which the tokenizer is trained on. :mod:`vlp.data.synthetic.world` calls them in order.
"""
