"""The ResNeXt-101 ONNX bulk-inference launcher and its worker; installed as
``cnns.inference.onnx_bulk``, the scripts still run from this folder as the original's README writes."""
