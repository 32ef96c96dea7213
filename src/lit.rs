//! A camera's source with its light: the light is held on from before the camera opens until the
//! upstream is closed or dropped. Made by the registry for cameras with a `light`, so the pump
//! knows nothing of lights; a stop interrupts the wait for the light like any open, and a hold is
//! released whatever ends the upstream (a panic included).

use std::sync::Arc;

use async_trait::async_trait;

use crate::frame::Captured;
use crate::light::{Light, LightHold};
use crate::source::{DemandRx, Source, SourceError, Upstream, Work};

pub struct LitSource {
    inner: Arc<dyn Source>,
    light: Arc<Light>,
}

impl LitSource {
    pub fn new(inner: Arc<dyn Source>, light: Arc<Light>) -> LitSource {
        LitSource { inner, light }
    }
}

#[async_trait]
impl Source for LitSource {
    async fn open(&self, demand: DemandRx) -> Result<Box<dyn Upstream>, SourceError> {
        let hold = self.light.hold();
        // The first frames are lit: the camera opens once the light is on (or known
        // unavailable), at most a second later.
        self.light.wait_on().await;
        let inner = self.inner.open(demand).await?;
        Ok(Box::new(LitUpstream { inner, _hold: hold }))
    }

    fn work(&self) -> Option<&Work> {
        self.inner.work()
    }
}

struct LitUpstream {
    inner: Box<dyn Upstream>,
    /// Released after the upstream closed (fields drop in order), or when it is dropped.
    _hold: LightHold,
}

#[async_trait]
impl Upstream for LitUpstream {
    async fn next_frame(&mut self) -> Result<Captured, SourceError> {
        self.inner.next_frame().await
    }

    fn take_invalid(&mut self) -> u64 {
        self.inner.take_invalid()
    }

    async fn close(self: Box<Self>) {
        let LitUpstream { inner, _hold } = *self;
        inner.close().await;
    }

    fn detects_stalls(&self) -> bool {
        self.inner.detects_stalls()
    }
}
