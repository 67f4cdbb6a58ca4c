//! Qdrant's REST API (1.10 and later; `/points/search` is gone from recent versions,
//! `/points/query` replaces it):
//!
//! - `DELETE /collections/{name}` (a collection that is not there: `result: false`, or 404);
//! - `PUT    /collections/{name}` `{"vectors": {"size": D, "distance": "Cosine"|"Euclid"|"Dot"}}`;
//! - `PUT    /collections/{name}/index?wait=true` `{"field_name", "field_schema": "integer"|"bool"}`
//!   for the payload fields that queries filter on;
//! - `PUT    /collections/{name}/points?wait=true` `{"points": [{"id": 7, "vector": [...],
//!   "payload": {"bucket": 3, "preloaded": true}}, ...]}` (answered once the points are applied);
//! - `GET    /collections/{name}` `{"result": {"status": "green"|"yellow"|"grey"|"red", ...}}`;
//! - `POST   /collections/{name}/points/query` `{"query": [...], "limit": k, "filter": {"must":
//!   [{"key": "bucket", "match": {"value": 3}}]}, "with_payload": false, "with_vector": false}`
//!   answers `{"result": {"points": [{"id": 7, "score": 0.93, "version": 1}, ...]}, "status": "ok"}`.
//!
//! Errors are `{"status": {"error": "..."}, "result": null}` with a 4xx or 5xx status.

use bytes::Bytes;
use hyper::Method;
use serde::Deserialize;

use super::{json_list, Item, Metric, QueryFilter};

pub(crate) struct Qdrant {
    /// `/collections/{name}`.
    path: String,
}

impl Qdrant {
    pub fn new(name: &str) -> Qdrant {
        Qdrant {
            path: format!("/collections/{name}"),
        }
    }

    pub fn drop_request(&self) -> (Method, String) {
        (Method::DELETE, self.path.clone())
    }

    pub fn create_request(&self, metric: Metric, dim: usize) -> (Method, String, Bytes) {
        let distance = match metric {
            Metric::Cosine => "Cosine",
            Metric::L2 => "Euclid",
            Metric::Dot => "Dot",
        };
        let body = serde_json::json!({ "vectors": { "size": dim, "distance": distance } });
        (
            Method::PUT,
            self.path.clone(),
            Bytes::from(body.to_string()),
        )
    }

    /// A payload index on `field` (`integer` or `bool`), so that filtered queries use it.
    pub fn index_request(&self, field: &str, schema: &str) -> (Method, String, Bytes) {
        let body = serde_json::json!({ "field_name": field, "field_schema": schema });
        (
            Method::PUT,
            format!("{}/index?wait=true", self.path),
            Bytes::from(body.to_string()),
        )
    }

    pub fn status_request(&self) -> (Method, String) {
        (Method::GET, self.path.clone())
    }

    /// The collection's status (`green` once its optimizers are done).
    pub fn collection_status(body: &[u8]) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        v["result"]["status"].as_str().map(str::to_string)
    }

    pub fn insert_path(&self) -> String {
        format!("{}/points?wait=true", self.path)
    }

    pub fn query_path(&self) -> String {
        format!("{}/points/query", self.path)
    }

    pub fn encode_insert(out: &mut Vec<u8>, items: &[Item<'_>]) {
        out.extend_from_slice(b"{\"points\":[");
        json_list(out, items, |out, it| {
            out.extend_from_slice(format!("{{\"id\":{},\"vector\":", it.id).as_bytes());
            out.extend_from_slice(it.vector.as_bytes());
            out.extend_from_slice(
                format!(
                    ",\"payload\":{{\"bucket\":{},\"preloaded\":{}}}}}",
                    it.bucket, it.preloaded
                )
                .as_bytes(),
            );
        });
        out.extend_from_slice(b"]}");
    }

    pub fn encode_query(vector: &str, k: u32, filter: QueryFilter) -> Vec<u8> {
        let mut out = Vec::with_capacity(vector.len() + 160);
        out.extend_from_slice(b"{\"query\":");
        out.extend_from_slice(vector.as_bytes());
        out.extend_from_slice(
            format!(",\"limit\":{k},\"with_payload\":false,\"with_vector\":false").as_bytes(),
        );
        match filter {
            QueryFilter::None => {}
            QueryFilter::Bucket(b) => out.extend_from_slice(
                format!(
                    ",\"filter\":{{\"must\":[{{\"key\":\"bucket\",\"match\":{{\"value\":{b}}}}}]}}"
                )
                .as_bytes(),
            ),
            QueryFilter::Preloaded => out.extend_from_slice(
                b",\"filter\":{\"must\":[{\"key\":\"preloaded\",\"match\":{\"value\":true}}]}",
            ),
        }
        out.push(b'}');
        out
    }

    /// The ids a query answered, nearest first.
    pub fn parse_query(body: &[u8], ids: &mut Vec<u64>) -> Result<(), String> {
        #[derive(Deserialize)]
        struct Answer {
            result: Points,
        }
        #[derive(Deserialize)]
        struct Points {
            points: Vec<Point>,
        }
        #[derive(Deserialize)]
        struct Point {
            id: serde_json::Value,
        }
        let a: Answer =
            serde_json::from_slice(body).map_err(|e| format!("unreadable query answer: {e}"))?;
        for p in a.result.points {
            ids.push(
                p.id.as_u64()
                    .ok_or_else(|| format!("id {} is not one of aibench's", p.id))?,
            );
        }
        Ok(())
    }

    /// The message of an error document.
    pub fn error_message(body: &[u8]) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        v["status"]["error"].as_str().map(str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_qdrants() {
        let q = Qdrant::new("aibench");
        let (m, p, body) = q.create_request(Metric::L2, 4);
        assert_eq!((m, p.as_str()), (Method::PUT, "/collections/aibench"));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"vectors": {"size": 4, "distance": "Euclid"}})
        );
        let mut out = Vec::new();
        Qdrant::encode_insert(
            &mut out,
            &[Item {
                id: 9,
                vector: "[1.0,2.0]",
                bucket: 1,
                preloaded: true,
            }],
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"points": [{"id": 9, "vector": [1.0, 2.0], "payload": {"bucket": 1, "preloaded": true}}]})
        );
        for f in [
            QueryFilter::None,
            QueryFilter::Bucket(3),
            QueryFilter::Preloaded,
        ] {
            let v: serde_json::Value =
                serde_json::from_slice(&Qdrant::encode_query("[0.5]", 3, f)).unwrap();
            assert_eq!(v["query"], serde_json::json!([0.5]));
            assert_eq!(v["limit"], 3);
            match f {
                QueryFilter::None => assert!(v.get("filter").is_none()),
                QueryFilter::Bucket(_) => {
                    assert_eq!(v["filter"]["must"][0]["match"]["value"], 3)
                }
                QueryFilter::Preloaded => {
                    assert_eq!(v["filter"]["must"][0]["key"], "preloaded")
                }
            }
        }
    }

    #[test]
    fn answers_are_read() {
        let mut ids = Vec::new();
        Qdrant::parse_query(
            br#"{"result":{"points":[{"id":4,"version":0,"score":0.9},{"id":2,"version":0,"score":0.8}]},"status":"ok","time":0.001}"#,
            &mut ids,
        )
        .unwrap();
        assert_eq!(ids, [4, 2]);
        assert!(Qdrant::parse_query(
            br#"{"result":{"points":[{"id":"550e8400-e29b-41d4-a716-446655440000","score":1}]}}"#,
            &mut ids
        )
        .is_err());
        assert_eq!(
            Qdrant::error_message(br#"{"status":{"error":"Not found"},"time":0.0}"#).as_deref(),
            Some("Not found")
        );
        assert_eq!(
            Qdrant::collection_status(br#"{"result":{"status":"green"}}"#).as_deref(),
            Some("green")
        );
    }
}
