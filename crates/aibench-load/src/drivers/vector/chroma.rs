//! ChromaDB's REST API, version 2 (ChromaDB 1.x, `chroma run`):
//!
//! - `DELETE /api/v2/tenants/{tenant}/databases/{database}/collections/{name}` (404: none to drop)
//! - `POST   .../collections` `{"name", "configuration": {"hnsw": {"space": "cosine"|"l2"|"ip"}}}`
//!   answers the collection, whose `id` (a UUID) names it in the paths below;
//! - `GET    .../collections/{name}` (a client process that did not create it finds its id);
//! - `POST   .../collections/{id}/add` `{"ids": ["7", ...], "embeddings": [[...], ...],
//!   "metadatas": [{"bucket": 3, "preloaded": true}, ...]}` (ids are strings);
//! - `POST   .../collections/{id}/query` `{"query_embeddings": [[...]], "n_results": k,
//!   "where": {...}, "include": []}` answers `{"ids": [["12", "7", ...]], ...}`, nearest first;
//!   `include: []` leaves distances, documents and metadata out (ids always come back).
//!
//! Errors are `{"error": "NotFoundError", "message": "..."}` with a 4xx or 5xx status.

use bytes::Bytes;
use hyper::Method;
use serde::Deserialize;

use super::{json_list, Item, Metric, QueryFilter};

pub(crate) struct Chroma {
    /// `/api/v2/tenants/{tenant}/databases/{database}`.
    base: String,
    name: String,
}

impl Chroma {
    pub fn new(tenant: &str, database: &str, name: &str) -> Chroma {
        Chroma {
            base: format!("/api/v2/tenants/{tenant}/databases/{database}"),
            name: name.to_string(),
        }
    }

    pub fn drop_request(&self) -> (Method, String) {
        (
            Method::DELETE,
            format!("{}/collections/{}", self.base, self.name),
        )
    }

    pub fn create_request(&self, metric: Metric) -> (Method, String, Bytes) {
        let space = match metric {
            Metric::Cosine => "cosine",
            Metric::L2 => "l2",
            Metric::Dot => "ip",
        };
        let body = serde_json::json!({
            "name": self.name,
            "configuration": { "hnsw": { "space": space } },
        });
        (
            Method::POST,
            format!("{}/collections", self.base),
            Bytes::from(body.to_string()),
        )
    }

    pub fn lookup_request(&self) -> (Method, String) {
        (
            Method::GET,
            format!("{}/collections/{}", self.base, self.name),
        )
    }

    /// The collection's id from a create or lookup answer.
    pub fn collection_id(body: &[u8]) -> Result<String, String> {
        #[derive(Deserialize)]
        struct Collection {
            id: String,
        }
        serde_json::from_slice::<Collection>(body)
            .map(|c| c.id)
            .map_err(|e| format!("no collection id in ChromaDB's answer: {e}"))
    }

    pub fn insert_path(&self, id: &str) -> String {
        format!("{}/collections/{id}/add", self.base)
    }

    pub fn query_path(&self, id: &str) -> String {
        format!("{}/collections/{id}/query", self.base)
    }

    pub fn encode_insert(out: &mut Vec<u8>, items: &[Item<'_>]) {
        out.extend_from_slice(b"{\"ids\":[");
        json_list(out, items, |out, it| {
            out.extend_from_slice(format!("\"{}\"", it.id).as_bytes())
        });
        out.extend_from_slice(b"],\"embeddings\":[");
        json_list(out, items, |out, it| {
            out.extend_from_slice(it.vector.as_bytes())
        });
        out.extend_from_slice(b"],\"metadatas\":[");
        json_list(out, items, |out, it| {
            out.extend_from_slice(
                format!(
                    "{{\"bucket\":{},\"preloaded\":{}}}",
                    it.bucket, it.preloaded
                )
                .as_bytes(),
            )
        });
        out.extend_from_slice(b"]}");
    }

    pub fn encode_query(vector: &str, k: u32, filter: QueryFilter) -> Vec<u8> {
        let mut out = Vec::with_capacity(vector.len() + 96);
        out.extend_from_slice(b"{\"query_embeddings\":[");
        out.extend_from_slice(vector.as_bytes());
        out.extend_from_slice(format!("],\"n_results\":{k},\"include\":[]").as_bytes());
        match filter {
            QueryFilter::None => {}
            QueryFilter::Bucket(b) => {
                out.extend_from_slice(format!(",\"where\":{{\"bucket\":{b}}}").as_bytes())
            }
            QueryFilter::Preloaded => {
                out.extend_from_slice(b",\"where\":{\"preloaded\":true}");
            }
        }
        out.push(b'}');
        out
    }

    /// The ids a query answered, nearest first.
    pub fn parse_query(body: &[u8], ids: &mut Vec<u64>) -> Result<(), String> {
        #[derive(Deserialize)]
        struct Answer<'a> {
            #[serde(borrow)]
            ids: Vec<Vec<std::borrow::Cow<'a, str>>>,
        }
        let a: Answer =
            serde_json::from_slice(body).map_err(|e| format!("unreadable query answer: {e}"))?;
        let [row] = &a.ids[..] else {
            return Err(format!(
                "one list of ids expected for one query, got {}",
                a.ids.len()
            ));
        };
        for id in row {
            ids.push(
                id.parse()
                    .map_err(|_| format!("id `{id}` is not one of aibench's"))?,
            );
        }
        Ok(())
    }

    /// The message of an error document.
    pub fn error_message(body: &[u8]) -> Option<String> {
        #[derive(Deserialize)]
        struct Error {
            error: String,
            #[serde(default)]
            message: String,
        }
        let e: Error = serde_json::from_slice(body).ok()?;
        Some(if e.message.is_empty() {
            e.error
        } else {
            format!("{}: {}", e.error, e.message)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_chromas() {
        let c = Chroma::new("default_tenant", "default_database", "aibench");
        assert_eq!(
            c.drop_request().1,
            "/api/v2/tenants/default_tenant/databases/default_database/collections/aibench"
        );
        let (_, _, body) = c.create_request(Metric::Dot);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["configuration"]["hnsw"]["space"], "ip");
        let mut out = Vec::new();
        Chroma::encode_insert(
            &mut out,
            &[
                Item {
                    id: 7,
                    vector: "[1.0,2.5]",
                    bucket: 3,
                    preloaded: true,
                },
                Item {
                    id: 8,
                    vector: "[0.0,-1.0]",
                    bucket: -1,
                    preloaded: false,
                },
            ],
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "ids": ["7", "8"],
                "embeddings": [[1.0, 2.5], [0.0, -1.0]],
                "metadatas": [{"bucket": 3, "preloaded": true}, {"bucket": -1, "preloaded": false}],
            })
        );
        let q: serde_json::Value =
            serde_json::from_slice(&Chroma::encode_query("[1.0]", 5, QueryFilter::Bucket(2)))
                .unwrap();
        assert_eq!(
            q,
            serde_json::json!({"query_embeddings": [[1.0]], "n_results": 5, "include": [], "where": {"bucket": 2}})
        );
    }

    #[test]
    fn answers_are_read() {
        let mut ids = Vec::new();
        Chroma::parse_query(
            br#"{"ids":[["3","1"]],"embeddings":null,"distances":null,"include":[]}"#,
            &mut ids,
        )
        .unwrap();
        assert_eq!(ids, [3, 1]);
        assert!(Chroma::parse_query(br#"{"ids":[["x"]]}"#, &mut ids).is_err());
        assert!(Chroma::parse_query(br#"{"ids":[]}"#, &mut ids).is_err());
        assert_eq!(
            Chroma::error_message(br#"{"error":"NotFoundError","message":"gone"}"#).as_deref(),
            Some("NotFoundError: gone")
        );
        assert_eq!(
            Chroma::collection_id(br#"{"id":"abc","name":"x"}"#).unwrap(),
            "abc"
        );
    }
}
