"""The BioCLIP Lite chain, end to end (`make demo`)."""
