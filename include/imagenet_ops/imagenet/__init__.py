"""ImageNet facts and image handling shared by the artifacts: constants, image listing from tars,
headers, verification, labels.
"""
