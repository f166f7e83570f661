"""One run end to end: the experiment (cached or trained stages), the pretrained stage 0, the dry run."""
