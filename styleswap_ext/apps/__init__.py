"""The front ends: the ``styleswap`` command line (cli) and the local web page (studio), with the
files they find. They may import every layer below (pipeline, models, ops, _util); nothing imports them."""
