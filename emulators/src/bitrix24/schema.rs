//! Field metadata per entity: what `crm.*.fields` returns, which fields `select=*` covers,
//! and how filters compare a field (number, datetime, text, boolean, multi-field).

use serde_json::{Map, Value, json};

/// Multi-fields: never covered by `select=*`, must be named; stored as `[{ID,VALUE_TYPE,VALUE,TYPE_ID}]`.
pub const MULTI_FIELDS: [&str; 5] = ["PHONE", "EMAIL", "WEB", "IM", "LINK"];

/// How a field is compared in filters and ordering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// IDs, counters, money, enumeration option IDs: numeric when both sides parse.
    Num,
    /// date/datetime: compared as instants (ISO 8601, offset optional = portal-local).
    Date,
    /// Text, case-insensitive (MySQL `_ci` collation).
    Str,
    /// Real JSON boolean (user.get ACTIVE); filters accept true/"Y"/"1".
    Bool,
    /// PHONE/EMAIL/...: exact match on any element's VALUE.
    Multi,
}

/// One field's metadata.
#[derive(Clone, Debug)]
pub struct FieldDef {
    pub name: String,
    pub type_: String,
    pub multiple: bool,
    pub read_only: bool,
    pub required: bool,
    pub title: String,
    pub status_type: Option<String>,
    /// enumeration options (ID, VALUE)
    pub items: Vec<(String, String)>,
}

impl FieldDef {
    pub fn new(name: &str, type_: &str, title: &str) -> Self {
        FieldDef {
            name: name.to_string(),
            type_: type_.to_string(),
            multiple: false,
            read_only: false,
            required: false,
            title: title.to_string(),
            status_type: None,
            items: Vec::new(),
        }
    }
    pub fn ro(mut self) -> Self {
        self.read_only = true;
        self
    }
    pub fn multi(mut self) -> Self {
        self.multiple = true;
        self
    }
    pub fn status(mut self, status_type: &str) -> Self {
        self.status_type = Some(status_type.to_string());
        self
    }
    pub fn items(mut self, items: &[(u32, &str)]) -> Self {
        self.items = items
            .iter()
            .map(|(id, v)| (id.to_string(), v.to_string()))
            .collect();
        self
    }
    pub fn is_uf(&self) -> bool {
        self.name.starts_with("UF_")
    }

    pub fn kind(&self) -> FieldKind {
        match self.type_.as_str() {
            "integer" | "double" | "money" | "enumeration" | "user" | "employee"
            | "crm_contact" | "crm_company" | "crm_lead" | "crm_deal" | "crm_category" => {
                FieldKind::Num
            }
            "date" | "datetime" => FieldKind::Date,
            "crm_multifield" => FieldKind::Multi,
            "boolean" if !self.is_uf() => FieldKind::Bool,
            _ => FieldKind::Str,
        }
    }

    /// The `crm.*.fields` description of this field.
    pub fn describe(&self) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), json!(self.type_));
        m.insert("isRequired".into(), json!(self.required));
        m.insert("isReadOnly".into(), json!(self.read_only));
        m.insert("isImmutable".into(), json!(false));
        m.insert("isMultiple".into(), json!(self.multiple));
        m.insert("isDynamic".into(), json!(self.is_uf()));
        m.insert(
            "title".into(),
            json!(if self.is_uf() {
                &self.name
            } else {
                &self.title
            }),
        );
        if let Some(st) = &self.status_type {
            m.insert("statusType".into(), json!(st));
        }
        if self.is_uf() {
            m.insert("listLabel".into(), json!(self.title));
            m.insert("formLabel".into(), json!(self.title));
            m.insert("filterLabel".into(), json!(self.title));
            m.insert("settings".into(), json!({}));
            if self.type_ == "enumeration" {
                let items: Vec<Value> = self
                    .items
                    .iter()
                    .map(|(id, v)| json!({"ID": id, "VALUE": v}))
                    .collect();
                m.insert("items".into(), Value::Array(items));
            }
        }
        Value::Object(m)
    }
}

/// Kind of a field that has no metadata (added ad hoc by a test), guessed from its name.
pub fn guess_kind(name: &str) -> FieldKind {
    if MULTI_FIELDS.contains(&name) {
        FieldKind::Multi
    } else if name == "ID" || name.ends_with("_ID") || name == "PARENT" || name == "UF_HEAD" {
        FieldKind::Num
    } else if name.starts_with("DATE_")
        || name.ends_with("_DATE")
        || name.ends_with("_TIME")
        || matches!(
            name,
            "CREATED" | "LAST_UPDATED" | "DEADLINE" | "BIRTHDATE" | "BEGINDATE" | "CLOSEDATE"
        )
    {
        FieldKind::Date
    } else {
        FieldKind::Str
    }
}

fn f(name: &str, t: &str, title: &str) -> FieldDef {
    FieldDef::new(name, t, title)
}

fn common_tail(v: &mut Vec<FieldDef>) {
    v.push(f("ASSIGNED_BY_ID", "user", "Ответственный"));
    v.push(f("CREATED_BY_ID", "user", "Кем создан").ro());
    v.push(f("MODIFY_BY_ID", "user", "Кем изменен").ro());
    v.push(f("DATE_CREATE", "datetime", "Дата создания").ro());
    v.push(f("DATE_MODIFY", "datetime", "Дата изменения").ro());
}

fn multi_fields(v: &mut Vec<FieldDef>, names: &[&str]) {
    for n in names {
        v.push(f(n, "crm_multifield", n).multi());
    }
}

/// Student/product/branch fields of the seed portal (contact side).
pub const UF_STUDENT_LAST_NAME: &str = "UF_CRM_57AD7FAF7E6C4";
pub const UF_STUDENT_FIRST_NAME: &str = "UF_CRM_1608028374";
pub const UF_STUDENT_BIRTHDATE: &str = "UF_CRM_1607943642";
pub const UF_PRODUCT: &str = "UF_CRM_58D15BB9CA8F4";
pub const UF_BRANCH: &str = "UF_CRM_1470852549";
pub const UF_SYNC_STATUS: &str = "UF_CRM_SYNC_STATUS";
/// Deal side.
pub const UF_SALE_DATE: &str = "UF_CRM_58D1057919A6F";
pub const UF_PAYMENT_METHOD: &str = "UF_CRM_1490347942";

pub fn contact() -> Vec<FieldDef> {
    let mut v = vec![
        f("ID", "integer", "ID").ro(),
        f("HONORIFIC", "crm_status", "Обращение").status("HONORIFIC"),
        f("NAME", "string", "Имя"),
        f("SECOND_NAME", "string", "Отчество"),
        f("LAST_NAME", "string", "Фамилия"),
        f("PHOTO", "file", "Фотография"),
        f("BIRTHDATE", "date", "Дата рождения"),
        f("TYPE_ID", "crm_status", "Тип контакта").status("CONTACT_TYPE"),
        f("SOURCE_ID", "crm_status", "Источник").status("SOURCE"),
        f("SOURCE_DESCRIPTION", "string", "Дополнительно об источнике"),
        f("POST", "string", "Должность"),
        f("COMMENTS", "string", "Комментарий"),
        f("OPENED", "char", "Доступен для всех"),
        f("EXPORT", "char", "Участвует в экспорте контактов"),
        f("HAS_PHONE", "char", "Задан телефон").ro(),
        f("HAS_EMAIL", "char", "Задан e-mail").ro(),
        f("HAS_IMOL", "char", "Задана открытая линия").ro(),
        f("COMPANY_ID", "crm_company", "Компания"),
        f("LEAD_ID", "crm_lead", "Лид").ro(),
        f("ORIGINATOR_ID", "string", "Внешний источник"),
        f(
            "ORIGIN_ID",
            "string",
            "Идентификатор элемента во внешнем источнике",
        ),
    ];
    common_tail(&mut v);
    multi_fields(&mut v, &["PHONE", "EMAIL", "WEB", "IM"]);
    v.push(f(UF_STUDENT_LAST_NAME, "string", "Фамилия ученика"));
    v.push(f(UF_STUDENT_FIRST_NAME, "string", "Имя ученика"));
    v.push(f(UF_STUDENT_BIRTHDATE, "date", "Дата рождения ученика"));
    v.push(f(UF_PRODUCT, "enumeration", "Продукт").multi().items(&[
        (404, "Обучение шахматам (оффлайн)"),
        (406, "Турниры"),
        (410, "Онлайн школа"),
    ]));
    v.push(f(UF_BRANCH, "enumeration", "Филиал").multi().items(&[
        (48, "Гоголевский"),
        (12708, "Сколково"),
        (52, "Пресня"),
        (348, "Онлайн"),
    ]));
    v.push(
        f("UF_CRM_1470854727", "enumeration", "Откуда узнали")
            .multi()
            .items(&[(62, "Сайт"), (64, "Друзья")]),
    );
    v.push(f(UF_SYNC_STATUS, "string", "Статус синхронизации"));
    v
}

pub fn deal() -> Vec<FieldDef> {
    let mut v = vec![
        f("ID", "integer", "ID").ro(),
        f("TITLE", "string", "Название"),
        f("TYPE_ID", "crm_status", "Тип").status("DEAL_TYPE"),
        f("CATEGORY_ID", "crm_category", "Воронка"),
        f("STAGE_ID", "crm_status", "Стадия сделки").status("DEAL_STAGE"),
        f("STAGE_SEMANTIC_ID", "string", "Группа стадии").ro(),
        f("IS_NEW", "char", "Новая сделка").ro(),
        f("IS_RECURRING", "char", "Регулярная сделка"),
        f("IS_RETURN_CUSTOMER", "char", "Повторная сделка").ro(),
        f("IS_REPEATED_APPROACH", "char", "Повторное обращение").ro(),
        f("PROBABILITY", "integer", "Вероятность"),
        f("CURRENCY_ID", "crm_currency", "Валюта"),
        f("OPPORTUNITY", "double", "Сумма"),
        f("IS_MANUAL_OPPORTUNITY", "char", "Сумма заполнена вручную"),
        f("TAX_VALUE", "double", "Ставка налога"),
        f("COMPANY_ID", "crm_company", "Компания"),
        f("CONTACT_ID", "crm_contact", "Контакт"),
        f("BEGINDATE", "date", "Дата начала"),
        f("CLOSEDATE", "date", "Предполагаемая дата закрытия"),
        f("OPENED", "char", "Доступна для всех"),
        f("CLOSED", "char", "Закрыта"),
        f("COMMENTS", "string", "Комментарий"),
        f("SOURCE_ID", "crm_status", "Источник").status("SOURCE"),
        f("SOURCE_DESCRIPTION", "string", "Дополнительно об источнике"),
        f("LEAD_ID", "crm_lead", "Лид").ro(),
        f("ADDITIONAL_INFO", "string", "Дополнительная информация"),
        f("ORIGINATOR_ID", "string", "Внешний источник"),
        f(
            "ORIGIN_ID",
            "string",
            "Идентификатор элемента во внешнем источнике",
        ),
        f("MOVED_TIME", "datetime", "Дата перемещения").ro(),
    ];
    common_tail(&mut v);
    v.push(f(UF_BRANCH, "enumeration", "Филиал").multi().items(&[
        (186, "Гоголевский"),
        (12706, "Сколково"),
        (190, "Пресня"),
    ]));
    v.push(f(UF_SALE_DATE, "date", "Дата продажи"));
    v.push(
        f(UF_PAYMENT_METHOD, "enumeration", "Способ оплаты").items(&[
            (450, "Наличные"),
            (452, "Карта"),
            (454, "Безналичный расчёт"),
        ]),
    );
    v.push(f(UF_SYNC_STATUS, "string", "Статус синхронизации"));
    v
}

pub fn company() -> Vec<FieldDef> {
    let mut v = vec![
        f("ID", "integer", "ID").ro(),
        f("TITLE", "string", "Название компании"),
        f("COMPANY_TYPE", "crm_status", "Тип компании").status("COMPANY_TYPE"),
        f("INDUSTRY", "crm_status", "Сфера деятельности").status("INDUSTRY"),
        f("EMPLOYEES", "crm_status", "Кол-во сотрудников").status("EMPLOYEES"),
        f("REVENUE", "double", "Годовой оборот"),
        f("CURRENCY_ID", "crm_currency", "Валюта"),
        f("COMMENTS", "string", "Комментарий"),
        f("OPENED", "char", "Доступна для всех"),
        f("HAS_PHONE", "char", "Задан телефон").ro(),
        f("HAS_EMAIL", "char", "Задан e-mail").ro(),
        f("LEAD_ID", "crm_lead", "Лид").ro(),
        f("ADDRESS", "string", "Фактический адрес"),
        f("ADDRESS_2", "string", "Квартира / офис"),
        f("ADDRESS_CITY", "string", "Город"),
    ];
    common_tail(&mut v);
    multi_fields(&mut v, &["PHONE", "EMAIL", "WEB", "IM"]);
    v
}

pub fn lead() -> Vec<FieldDef> {
    let mut v = vec![
        f("ID", "integer", "ID").ro(),
        f("TITLE", "string", "Название лида"),
        f("HONORIFIC", "crm_status", "Обращение").status("HONORIFIC"),
        f("NAME", "string", "Имя"),
        f("SECOND_NAME", "string", "Отчество"),
        f("LAST_NAME", "string", "Фамилия"),
        f("BIRTHDATE", "date", "Дата рождения"),
        f("STATUS_ID", "crm_status", "Стадия").status("STATUS"),
        f("STATUS_DESCRIPTION", "string", "Дополнительно о стадии"),
        f("COMMENTS", "string", "Комментарий"),
        f("SOURCE_ID", "crm_status", "Источник").status("SOURCE"),
        f("OPPORTUNITY", "double", "Сумма"),
        f("CURRENCY_ID", "crm_currency", "Валюта"),
        f("CONTACT_ID", "crm_contact", "Контакт"),
        f("COMPANY_ID", "crm_company", "Компания"),
        f("HAS_PHONE", "char", "Задан телефон").ro(),
        f("HAS_EMAIL", "char", "Задан e-mail").ro(),
    ];
    common_tail(&mut v);
    multi_fields(&mut v, &["PHONE", "EMAIL"]);
    v
}

pub fn activity() -> Vec<FieldDef> {
    vec![
        f("ID", "integer", "ID").ro(),
        f("OWNER_ID", "integer", "ID владельца"),
        f("OWNER_TYPE_ID", "integer", "Тип владельца"),
        f("TYPE_ID", "integer", "Тип"),
        f("PROVIDER_ID", "string", "Провайдер"),
        f("PROVIDER_TYPE_ID", "string", "Тип провайдера"),
        f("ASSOCIATED_ENTITY_ID", "integer", "Связанная сущность"),
        f("SUBJECT", "string", "Тема"),
        f("COMPLETED", "char", "Выполнено"),
        f("STATUS", "integer", "Статус"),
        f("RESPONSIBLE_ID", "user", "Ответственный"),
        f("PRIORITY", "integer", "Важность"),
        f("DESCRIPTION", "string", "Описание"),
        f("DESCRIPTION_TYPE", "integer", "Тип описания"),
        f("DIRECTION", "integer", "Направление"),
        f("LOCATION", "string", "Место"),
        f("CREATED", "datetime", "Дата создания").ro(),
        f("AUTHOR_ID", "user", "Автор").ro(),
        f("LAST_UPDATED", "datetime", "Дата изменения").ro(),
        f("EDITOR_ID", "user", "Кем изменено").ro(),
        f("START_TIME", "datetime", "Начало"),
        f("END_TIME", "datetime", "Окончание"),
        f("DEADLINE", "datetime", "Крайний срок").ro(),
        f("ORIGINATOR_ID", "string", "Внешний источник"),
        f("ORIGIN_ID", "string", "Идентификатор во внешнем источнике"),
        // Not in `*` (RD: select COMMUNICATIONS explicitly), like a multi-field.
        f("COMMUNICATIONS", "crm_multifield", "Средства связи"),
    ]
}

pub fn user() -> Vec<FieldDef> {
    let mut v = vec![
        f("ID", "integer", "ID").ro(),
        f("XML_ID", "string", "Внешний код"),
        f("ACTIVE", "boolean", "Активность"),
        f("NAME", "string", "Имя"),
        f("LAST_NAME", "string", "Фамилия"),
        f("SECOND_NAME", "string", "Отчество"),
        f("EMAIL", "string", "E-mail"),
        f("LAST_LOGIN", "datetime", "Последняя авторизация"),
        f("DATE_REGISTER", "datetime", "Дата регистрации"),
        f("IS_ONLINE", "char", "Онлайн"),
        f("PERSONAL_GENDER", "string", "Пол"),
        f("PERSONAL_MOBILE", "string", "Мобильный телефон"),
        f("WORK_POSITION", "string", "Должность"),
        f("WORK_PHONE", "string", "Рабочий телефон"),
        f("UF_DEPARTMENT", "integer", "Подразделения").multi(),
        f("USER_TYPE", "string", "Тип пользователя"),
    ];
    // The rest of user.get's fields (RD user-fields.md); rows only show the ones they have.
    for name in [
        "PERSONAL_PROFESSION",
        "PERSONAL_WWW",
        "PERSONAL_BIRTHDAY",
        "PERSONAL_PHOTO",
        "PERSONAL_ICQ",
        "PERSONAL_PHONE",
        "PERSONAL_FAX",
        "PERSONAL_PAGER",
        "PERSONAL_STREET",
        "PERSONAL_CITY",
        "PERSONAL_STATE",
        "PERSONAL_ZIP",
        "PERSONAL_COUNTRY",
        "WORK_COMPANY",
        "UF_INTERESTS",
        "UF_SKILLS",
        "UF_WEB_SITES",
        "UF_XING",
        "UF_LINKEDIN",
        "UF_FACEBOOK",
        "UF_TWITTER",
        "UF_SKYPE",
        "UF_DISTRICT",
        "UF_PHONE_INNER",
    ] {
        v.push(f(name, "string", name));
    }
    v
}

pub fn department() -> Vec<FieldDef> {
    vec![
        f("ID", "integer", "ID").ro(),
        f("NAME", "string", "Название"),
        f("SORT", "integer", "Сортировка"),
        f("PARENT", "integer", "Родительское подразделение"),
        f("UF_HEAD", "integer", "Руководитель"),
    ]
}

/// Schema for an entity name used by the portal (`contact`, `deal`, ...); empty if unknown.
pub fn for_entity(entity: &str) -> Vec<FieldDef> {
    match entity {
        "contact" => contact(),
        "deal" => deal(),
        "company" => company(),
        "lead" => lead(),
        "activity" => activity(),
        "user" => user(),
        "department" => department(),
        _ => vec![FieldDef::new("ID", "integer", "ID").ro()],
    }
}
