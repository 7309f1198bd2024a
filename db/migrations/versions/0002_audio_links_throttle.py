"""Audio links and client throttle tables; the play in progress per rating.

audio_links: the blinded audio URL tokens (shared by app replicas, no bytes); client_throttle: failed
logins per client with back-off; ratings.playing_since: overlapping A/B playback is not two full plays.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audio_links',
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('rater_id', sa.Integer(), nullable=False),
    sa.Column('trial_id', sa.Integer(), nullable=False),
    sa.Column('rating_id', sa.Integer(), nullable=False),
    sa.Column('binding', sa.String(length=64), nullable=False),
    sa.Column('seed', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('fetched_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['rater_id'], ['raters.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['rating_id'], ['ratings.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['trial_id'], ['trials.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token')
    )
    with op.batch_alter_table('audio_links', schema=None) as batch_op:
        batch_op.create_index('ix_audio_links_rater_trial', ['rater_id', 'trial_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audio_links_expires_at'), ['expires_at'], unique=False)

    op.create_table('client_throttle',
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('blocked_until', sa.DateTime(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('client_throttle', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_client_throttle_updated_at'), ['updated_at'], unique=False)

    with op.batch_alter_table('ratings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('playing_since', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('ratings', schema=None) as batch_op:
        batch_op.drop_column('playing_since')
    with op.batch_alter_table('client_throttle', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_client_throttle_updated_at'))
    op.drop_table('client_throttle')
    with op.batch_alter_table('audio_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audio_links_expires_at'))
        batch_op.drop_index('ix_audio_links_rater_trial')
    op.drop_table('audio_links')
