"""Convolutional networks: the classification lineage and fully convolutional nets."""
