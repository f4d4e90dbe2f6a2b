"""Weight-sharing supernets: elastic ops (:mod:`.elastic`) and the elastic MBConv supernet of BigNAS
(:class:`ElasticMBConvSupernet`, alias :data:`Supernet`) over the ``bignas``, ``menas-ws`` and ``menas-mt`` spaces."""
from .mbconv import PLAN_CACHE_SIZE, ElasticMBConvSupernet, Supernet

__all__ = ["ElasticMBConvSupernet", "Supernet", "PLAN_CACHE_SIZE"]
