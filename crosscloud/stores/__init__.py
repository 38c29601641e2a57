"""Object stores: one interface (`base.ObjectStore`), one implementation per cloud."""

from crosscloud.stores.base import ObjectInfo, ObjectReader, ObjectStore, Page, PutOptions, PutResult

__all__ = ["ObjectInfo", "ObjectReader", "ObjectStore", "Page", "PutOptions", "PutResult"]
