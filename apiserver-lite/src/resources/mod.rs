//! What the server serves: each resource's group, version, kind, plural and short names,
//! scope, verbs and subresources. Discovery, OpenAPI, routing, tables and storage keys are
//! all driven from this one registry, so a custom resource later is one more entry.

mod builtin;

pub use builtin::builtin;

/// One served resource (a group/version/plural).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// "" for the core (legacy `/api/v1`) group.
    pub group: String,
    pub version: String,
    /// The URL name: `pods`.
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Kubernetes verb names: get, list, watch, create, update, patch, delete, deletecollection.
    pub verbs: Vec<String>,
    pub subresources: Vec<Subresource>,
    /// Where the objects are stored when another resource holds them (group, plural):
    /// events.k8s.io/v1 events are core/v1 events in storage, as in kube-apiserver.
    pub stored_as: Option<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subresource {
    /// `status`, `scale`, `log`, `exec`, `binding`, ...
    pub name: String,
    /// The kind the subresource takes and returns (`Pod` for pods/status, `Scale` for scale).
    pub kind: String,
    /// Group and version of that kind when it differs from the parent's (`autoscaling/v1`
    /// for Scale, `policy/v1` for Eviction).
    pub group: String,
    pub version: String,
    pub verbs: Vec<String>,
}

impl Resource {
    /// `v1`, `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The storage key prefix of every object of this resource, or of those in `namespace`:
    /// `/registry/<group|core>/<plural>/[<namespace>/]`.
    pub fn key_prefix(&self, namespace: Option<&str>) -> String {
        let (group, plural) = match &self.stored_as {
            Some((g, p)) => (g.as_str(), p.as_str()),
            None => (self.group.as_str(), self.plural.as_str()),
        };
        let group = if group.is_empty() { "core" } else { group };
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{group}/{plural}/{ns}/"),
            _ => format!("/registry/{group}/{plural}/"),
        }
    }

    /// The storage key of one object (`namespace` is ignored for cluster-scoped resources).
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.key_prefix(namespace))
    }

    /// The URL path of the collection: `/api/v1/namespaces/default/pods`, `/apis/apps/v1/deployments`.
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        let root = if self.group.is_empty() { format!("/api/{}", self.version) } else { format!("/apis/{}/{}", self.group, self.version) };
        match namespace {
            Some(ns) if self.namespaced => format!("{root}/namespaces/{ns}/{}", self.plural),
            _ => format!("{root}/{}", self.plural),
        }
    }

    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    pub fn subresource(&self, name: &str) -> Option<&Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }
}

/// Every served resource.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    resources: Vec<Resource>,
}

impl Registry {
    pub fn new(resources: Vec<Resource>) -> Registry {
        Registry { resources }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Resource> {
        self.resources.iter()
    }

    /// The resource served at `group`/`version`/`plural`.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// The resource of a kind (`apps`, `v1`, `Deployment`).
    pub fn by_kind(&self, group: &str, version: &str, kind: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.group == group && r.version == version && r.kind == kind)
    }

    /// The groups in the order discovery lists them (core first), each with its versions,
    /// preferred first.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for r in &self.resources {
            match groups.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version.clone()),
                Some(_) => {}
                None => groups.push((r.group.clone(), vec![r.version.clone()])),
            }
        }
        groups
    }

    /// The resources of one group version, in registry order.
    pub fn in_group_version<'a>(&'a self, group: &'a str, version: &'a str) -> impl Iterator<Item = &'a Resource> + 'a {
        self.resources.iter().filter(move |r| r.group == group && r.version == version)
    }
}
