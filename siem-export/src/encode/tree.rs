//! A small ordered JSON tree for the schema-mapping encoders (ECS, OCSF).
//!
//! `serde_json::Value` would do, except that its key order depends on a
//! crate feature (`preserve_order`) that any other crate in a build can turn
//! on. Exact, documented output needs a fixed order, so objects here keep
//! insertion order, and empty objects and arrays are dropped when written
//! (a mapping never has to check whether a sub-object ended up empty).

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Arr(Vec<Node>),
    Obj(Obj),
}

/// A JSON object with keys in insertion order.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Obj(Vec<(&'static str, Node)>);

impl Obj {
    pub(crate) fn new() -> Self {
        Self(Vec::new())
    }

    pub(crate) fn str(&mut self, key: &'static str, v: impl Into<String>) -> &mut Self {
        self.0.push((key, Node::Str(v.into())));
        self
    }

    pub(crate) fn opt_str<S: Into<String>>(
        &mut self,
        key: &'static str,
        v: Option<S>,
    ) -> &mut Self {
        if let Some(v) = v {
            self.str(key, v);
        }
        self
    }

    pub(crate) fn int(&mut self, key: &'static str, v: impl Into<i64>) -> &mut Self {
        self.0.push((key, Node::Int(v.into())));
        self
    }

    pub(crate) fn opt_int<I: Into<i64>>(&mut self, key: &'static str, v: Option<I>) -> &mut Self {
        if let Some(v) = v {
            self.int(key, v);
        }
        self
    }

    pub(crate) fn float(&mut self, key: &'static str, v: f64) -> &mut Self {
        self.0.push((key, Node::Float(v)));
        self
    }

    pub(crate) fn bool(&mut self, key: &'static str, v: bool) -> &mut Self {
        self.0.push((key, Node::Bool(v)));
        self
    }

    pub(crate) fn obj(&mut self, key: &'static str, v: Obj) -> &mut Self {
        self.0.push((key, Node::Obj(v)));
        self
    }

    pub(crate) fn arr(&mut self, key: &'static str, v: Vec<Node>) -> &mut Self {
        self.0.push((key, Node::Arr(v)));
        self
    }

    pub(crate) fn strs<I, S>(&mut self, key: &'static str, v: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.arr(key, v.into_iter().map(|s| Node::Str(s.into())).collect())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.iter().all(|(_, v)| v.is_empty())
    }
}

impl Node {
    fn is_empty(&self) -> bool {
        match self {
            Node::Arr(a) => a.iter().all(Node::is_empty),
            Node::Obj(o) => o.is_empty(),
            _ => false,
        }
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Str(v) => s.serialize_str(v),
            Node::Int(v) => s.serialize_i64(*v),
            Node::Float(v) => s.serialize_f64(*v),
            Node::Bool(v) => s.serialize_bool(*v),
            Node::Arr(items) => {
                let mut seq = s.serialize_seq(None)?;
                for item in items.iter().filter(|n| !n.is_empty()) {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Node::Obj(o) => o.serialize(s),
        }
    }
}

impl Serialize for Obj {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (k, v) in self.0.iter().filter(|(_, v)| !v.is_empty()) {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_drops_empty_containers() {
        let mut inner = Obj::new();
        inner.arr("none", vec![]).obj("nothing", Obj::new());
        let mut o = Obj::new();
        o.str("z", "a\"\n")
            .int("a", -1)
            .float("f", 47.0)
            .bool("b", true)
            .obj("empty", inner)
            .strs("list", ["x"])
            .arr("holes", vec![Node::Obj(Obj::new()), Node::Int(1)]);
        assert_eq!(
            serde_json::to_string(&o).unwrap(),
            r#"{"z":"a\"\n","a":-1,"f":47.0,"b":true,"list":["x"],"holes":[1]}"#
        );
    }
}
