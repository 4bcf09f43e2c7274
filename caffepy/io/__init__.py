"""Reading and writing Caffe's files: prototxt, caffemodel, solverstate,
binaryproto; upgrades of legacy formats."""
