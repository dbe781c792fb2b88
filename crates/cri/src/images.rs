//! ImageService: images live in berth-image's store under `<root>/images`.

use base64::Engine as _;

use crate::api;
use crate::error::{invalid, Error, Result};
use crate::Cri;

fn image_to_api(info: &berth_image::ImageInfo) -> api::Image {
    let user = info.config.user.clone().unwrap_or_default();
    let name = user.split(':').next().unwrap_or_default();
    let (uid, username) = match name.parse::<i64>() {
        Ok(n) => (Some(api::Int64Value { value: n }), String::new()),
        Err(_) if name.is_empty() => (None, String::new()),
        Err(_) => (None, name.to_string()),
    };
    api::Image {
        id: info.id.to_string(),
        repo_tags: info.repo_tags.clone(),
        repo_digests: info.repo_digests.clone(),
        size: info.size,
        uid,
        username,
        spec: Some(api::ImageSpec {
            image: info.id.to_string(),
            ..Default::default()
        }),
        pinned: false,
    }
}

/// Credentials from the request: username/password, or `auth` (base64 "user:pass").
fn credentials(auth: Option<&api::AuthConfig>) -> Result<Option<berth_image::Credentials>> {
    let Some(a) = auth else { return Ok(None) };
    if !a.username.is_empty() {
        return Ok(Some(berth_image::Credentials {
            username: a.username.clone(),
            password: a.password.clone(),
        }));
    }
    if !a.auth.is_empty() {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.auth.trim())
            .map_err(|e| invalid("auth.auth", format!("not base64: {e}")))?;
        let text = String::from_utf8(raw).map_err(|_| invalid("auth.auth", "not UTF-8"))?;
        let (u, p) = text
            .split_once(':')
            .ok_or_else(|| invalid("auth.auth", "expected base64 of user:password"))?;
        return Ok(Some(berth_image::Credentials {
            username: u.into(),
            password: p.into(),
        }));
    }
    if !a.identity_token.is_empty() || !a.registry_token.is_empty() {
        return Err(Error::Unsupported(
            "auth: identity and registry tokens are not supported; use username/password".into(),
        ));
    }
    Ok(None)
}

impl Cri {
    pub fn pull_image(&self, image: &str, auth: Option<&api::AuthConfig>) -> Result<String> {
        if image.is_empty() {
            return Err(invalid("image.image", "must not be empty"));
        }
        let r: berth_image::Reference = image.parse()?;
        let opts = berth_image::PullOptions {
            insecure_registries: self.config.insecure_registries.clone(),
            credentials: credentials(auth)?,
            progress: false,
            ..Default::default()
        };
        let id = self.store.pull(&r, &opts)?;
        tracing::info!(image, id = %id, "pulled");
        Ok(id.to_string())
    }

    pub fn list_images(&self, filter: Option<&str>) -> Result<Vec<api::Image>> {
        if let Some(f) = filter.filter(|f| !f.is_empty()) {
            return Ok(self.image_status(f)?.into_iter().collect());
        }
        let mut out = Vec::new();
        for s in self.store.list()? {
            match self.store.inspect(&s.id.to_string()) {
                Ok(info) => out.push(image_to_api(&info)),
                Err(berth_image::Error::ImageNotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out.dedup_by(|a, b| a.id == b.id);
        Ok(out)
    }

    /// `None` when the store has no such image (not an error in CRI).
    pub fn image_status(&self, image: &str) -> Result<Option<api::Image>> {
        match self.store.inspect(image) {
            Ok(info) => Ok(Some(image_to_api(&info))),
            Err(berth_image::Error::ImageNotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Remove every name of the image the reference resolves to; an image already gone
    /// is fine (CRI's rule). Unused content goes at once.
    pub fn remove_image(&self, image: &str) -> Result<()> {
        let id = match self.store.find(image) {
            Ok(img) => img.id.to_string(),
            Err(berth_image::Error::ImageNotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        self.bundles.remove_image(&id, true)?;
        if let Err(e) = self.bundles.prune() {
            tracing::warn!(error = %e, "pruning image content");
        }
        tracing::info!(image, id, "removed");
        Ok(())
    }

    pub fn image_fs_info(&self) -> Result<api::ImageFsInfoResponse> {
        let root = self.layout.images();
        let (mut bytes, mut inodes) = (0u64, 0u64);
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let Ok(m) = e.path().symlink_metadata() else {
                    continue;
                };
                inodes += 1;
                if m.is_dir() {
                    stack.push(e.path());
                } else {
                    use std::os::unix::fs::MetadataExt;
                    bytes += m.blocks() * 512;
                }
            }
        }
        let usage = api::FilesystemUsage {
            timestamp: crate::meta::now_nanos(),
            fs_id: Some(api::FilesystemIdentifier {
                mountpoint: root.display().to_string(),
            }),
            used_bytes: Some(api::UInt64Value { value: bytes }),
            inodes_used: Some(api::UInt64Value { value: inodes }),
        };
        Ok(api::ImageFsInfoResponse {
            image_filesystems: vec![usage.clone()],
            container_filesystems: vec![],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_forms() {
        assert!(credentials(None).unwrap().is_none());
        let c = credentials(Some(&api::AuthConfig {
            auth: base64::engine::general_purpose::STANDARD.encode("u:p:w"),
            ..Default::default()
        }))
        .unwrap()
        .unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p:w"));
        assert!(credentials(Some(&api::AuthConfig {
            auth: "!!".into(),
            ..Default::default()
        }))
        .is_err());
    }
}
