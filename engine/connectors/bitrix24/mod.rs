//! bitrix24 connector.
